// Node (jsonwebtoken + fetch, e.g. in an Express handler): publish an event.
// Usage: JWT_SECRET=... node publish.js app.user.bob.notifications "Your report is ready"
// (PUBLISH_URL defaults to http://127.0.0.1:8080/publish)
const crypto = require("crypto");
const jwt = require("jsonwebtoken");

const secret = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8"));
const url = process.env.PUBLISH_URL || "http://127.0.0.1:8080/publish";

async function publish(topic, ...args) {
  const token = jwt.sign({ sub: "billing", roles: ["backend"] }, secret,
    { algorithm: "HS256", expiresIn: 60, jwtid: crypto.randomUUID() });
  const response = await fetch(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ topic, args }),
  });
  const answer = await response.json(); // {"id": ...}, or {"error", "message"} saying why
  if (!response.ok) throw new Error(`${response.status}: ${answer.error}: ${answer.message}`);
  return answer;
}

const [topic, ...args] = process.argv.slice(2);
publish(topic, ...args).then(
  (answer) => console.log(JSON.stringify(answer)),
  (error) => { console.error(error.message); process.exit(1); },
);
