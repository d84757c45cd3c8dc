<?php
// PHP (no library: hash_hmac and curl, any PHP >= 7.4 with php-curl): publish an event.
// While the router cannot be reached (connection refused or dropped) or answers 503, it tries again,
// at most 5 attempts, waiting the 503's Retry-After or 0.5, 1, 2, 4 s; every attempt carries the same
// Idempotency-Key, so the router publishes it once however many attempts reach it.
// Usage: JWT_SECRET=... php publish.php app.user.bob.notifications "Your report is ready"
// (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)

const ATTEMPTS = 5;
const MAX_WAIT_SECONDS = 30;

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

function uuid4(): string {
    $bytes = random_bytes(16);
    $bytes[6] = chr(ord($bytes[6]) & 0x0f | 0x40);
    $bytes[8] = chr(ord($bytes[8]) & 0x3f | 0x80);
    return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($bytes), 4));
}

function publish(string $topic, array $args = [], array $kwargs = []): array {
    $body = json_encode(['topic' => $topic, 'args' => $args, 'kwargs' => (object) $kwargs]);
    $key = uuid4();  // one key per publication, the same on every attempt
    for ($attempt = 1; ; $attempt++) {
        $retryAfter = null;
        $curl = curl_init(getenv('PUBLISH_URL') ?: 'http://127.0.0.1:8080/publish');
        curl_setopt_array($curl, [
            CURLOPT_POST => true,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 10,
            CURLOPT_HTTPHEADER => [
                'Authorization: Bearer ' . backend_token(getenv('JWT_SECRET')),
                'Content-Type: application/json',
                "Idempotency-Key: $key",
            ],
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HEADERFUNCTION => function ($curl, $line) use (&$retryAfter) {
                if (preg_match('/^Retry-After:\s*(\d+)/i', $line, $m)) {
                    $retryAfter = (int) $m[1];
                }
                return strlen($line);
            },
        ]);
        $answer = curl_exec($curl);
        $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $error = curl_error($curl);
        curl_close($curl);
        if ($answer !== false && $status !== 503) {
            if ($status !== 200) {  // 400/401/403/413/422: the body says why; retrying will not help
                fwrite(STDERR, "$status: $answer\n");
                exit(1);
            }
            return json_decode($answer, true);  // ['id' => <publication id>], the same for every attempt
        }
        if ($attempt === ATTEMPTS) {
            fwrite(STDERR, "publish: no answer after " . ATTEMPTS . " attempts: " . ($answer === false ? $error : $answer) . "\n");
            exit(1);
        }
        $wait = $answer !== false && $retryAfter !== null ? min($retryAfter, MAX_WAIT_SECONDS) : 0.5 * 2 ** ($attempt - 1);
        fwrite(STDERR, "publish: attempt $attempt failed (" . ($answer === false ? $error : "503") . "); retrying in $wait s\n");
        usleep((int) ($wait * 1000000));
    }
}

echo json_encode(publish($argv[1], array_slice($argv, 2))), "\n";
