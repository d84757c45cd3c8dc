// Node (jsonwebtoken): mint a token for the router. Usage: JWT_SECRET=... node mint_token.js alice user
const jwt = require("jsonwebtoken");

// A KeyObject, not a string: jsonwebtoken is ~20x faster with it.
const secret = require("crypto").createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8"));
const [sub, ...roles] = process.argv.slice(2);
const token = jwt.sign({ sub, roles }, secret, { algorithm: "HS256", expiresIn: 60, jwtid: require("crypto").randomUUID() });
process.stdout.write(token + "\n");
