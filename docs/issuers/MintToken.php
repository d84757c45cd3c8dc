<?php
// PHP (firebase/php-jwt), e.g. in a Laravel controller: GET /auth/token for the logged-in user.
use Firebase\JWT\JWT;

public function token(Request $request)
{
    $user = $request->user();                 // your existing login
    $now = time();
    $token = JWT::encode([
        'sub'   => $user->username,           // becomes the WAMP authid
        'roles' => $user->roles ?? ['user'],  // the router's policy roles
        'iat'   => $now,
        'exp'   => $now + 60,                 // short-lived: the page fetches one per (re)connect
        'jti'   => bin2hex(random_bytes(16)),
    ], env('JWT_SECRET'), 'HS256');
    return response()->json(['token' => $token, 'exp' => $now + 60])->header('Cache-Control', 'no-store');
}
