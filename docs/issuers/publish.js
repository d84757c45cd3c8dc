// Node (jsonwebtoken + fetch, e.g. in an Express handler): publish an event.
// While the router cannot be reached (connection refused or dropped) or answers 503, it tries again,
// at most 5 attempts, waiting the 503's Retry-After or 0.5, 1, 2, 4 s; every attempt carries the same
// Idempotency-Key, so the router publishes it once however many attempts reach it.
// Usage: JWT_SECRET=... node publish.js app.user.bob.notifications "Your report is ready"
// (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)
const crypto = require("crypto");
const jwt = require("jsonwebtoken");

const secret = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8"));
const url = process.env.PUBLISH_URL || "http://127.0.0.1:8080/publish";
const ATTEMPTS = 5;
const MAX_WAIT_SECONDS = 30;
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function publish(topic, ...args) {
  const key = crypto.randomUUID(); // one key per publication, the same on every attempt
  for (let attempt = 1; ; attempt++) {
    const token = jwt.sign({ sub: "billing", roles: ["backend"] }, secret,
      { algorithm: "HS256", expiresIn: 60, jwtid: crypto.randomUUID() });
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify({ topic, args }),
        signal: AbortSignal.timeout(10000),
      });
    } catch (error) { // refused, dropped, no answer
      if (attempt === ATTEMPTS) throw new Error(`no answer after ${ATTEMPTS} attempts: ${error.cause || error}`);
      const wait = 0.5 * 2 ** (attempt - 1);
      console.error(`publish: attempt ${attempt} failed (${error.cause?.code || error.name}); retrying in ${wait} s`);
      await sleep(wait);
      continue;
    }
    const answer = await response.json(); // {"id": ...}, or {"error", "message"} saying why
    if (response.status === 503 && attempt < ATTEMPTS) {
      const after = Number.parseInt(response.headers.get("retry-after") || "", 10);
      const wait = Number.isNaN(after) ? 0.5 * 2 ** (attempt - 1) : Math.min(after, MAX_WAIT_SECONDS);
      console.error(`publish: attempt ${attempt} failed (503); retrying in ${wait} s`);
      await sleep(wait);
      continue;
    }
    if (!response.ok) throw new Error(`${response.status}: ${answer.error}: ${answer.message}`);
    return answer; // the same id for every attempt
  }
}

const [topic, ...args] = process.argv.slice(2);
publish(topic, ...args).then(
  (answer) => console.log(JSON.stringify(answer)),
  (error) => { console.error(error.message); process.exit(1); },
);
