<?php
// PHP (no library: hash_hmac and curl, any PHP >= 7.4 with php-curl): publish an event.
// Usage: JWT_SECRET=... php publish.php app.user.bob.notifications "Your report is ready"
// (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)

function base64url(string $data): string {
    return rtrim(strtr(base64_encode($data), '+/', '-_'), '=');
}

function backend_token(string $secret, int $ttl = 60): string {
    $now = time();
    $header = base64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
    $claims = base64url(json_encode([
        'sub' => 'billing', 'roles' => ['backend'], 'iat' => $now, 'exp' => $now + $ttl,
        'jti' => bin2hex(random_bytes(16)),
    ]));
    $signature = base64url(hash_hmac('sha256', "$header.$claims", $secret, true));
    return "$header.$claims.$signature";
}

function publish(string $topic, array $args = [], array $kwargs = []): array {
    $curl = curl_init(getenv('PUBLISH_URL') ?: 'http://127.0.0.1:8080/publish');
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 10,
        CURLOPT_HTTPHEADER => [
            'Authorization: Bearer ' . backend_token(getenv('JWT_SECRET')),
            'Content-Type: application/json',
        ],
        CURLOPT_POSTFIELDS => json_encode(['topic' => $topic, 'args' => $args, 'kwargs' => (object) $kwargs]),
    ]);
    $body = curl_exec($curl);
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    curl_close($curl);
    if ($body === false || $status !== 200) {  // 400/401/403/413: the body says why
        fwrite(STDERR, "$status: $body\n");
        exit(1);
    }
    return json_decode($body, true);  // ['id' => <publication id>]
}

echo json_encode(publish($argv[1], array_slice($argv, 2))), "\n";
