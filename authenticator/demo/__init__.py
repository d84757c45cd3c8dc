"""The demo token issuer (a Flask app the demo node serves at /auth): not for production."""
