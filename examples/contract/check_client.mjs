// Check your client against fakeshift with Node's built-in fetch (Node 18+): run your client's
// calls, then fail on any contract violation the emulator recorded for your API key.
//   BLUESHIFT_BASE_URL=http://127.0.0.1:8080 BLUESHIFT_API_KEY=ci-job-17 \
//     node examples/contract/check_client.mjs
// Exit status: 0 when the emulator saw no violation from this key, 1 otherwise.

const baseUrl = (process.env.BLUESHIFT_BASE_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const apiKey = process.env.BLUESHIFT_API_KEY;
if (!apiKey) {
  console.error("usage: BLUESHIFT_API_KEY=... node check_client.mjs");
  process.exit(2);
}
// Blueshift: HTTP Basic with the API key as user name and an empty password.
const authorization = "Basic " + Buffer.from(`${apiKey}:`).toString("base64");

async function call(method, path, body) {
  const response = await fetch(baseUrl + path, {
    method,
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

// Stands in for your SDK or service: create a customer, then erase them.
async function yourClientCode() {
  const identify = await call("POST", "/api/v1/customers",
                              { email: "jane@example.com", customer_id: "jane-1" });
  console.log(`identify: ${identify.status}`);
  const erase = await call("POST", "/api/v1/customers/delete?delete_all_matching_customers=true",
                           { email: "jane@example.com" });
  console.log(`delete: ${erase.status}`);
}

await yourClientCode();
// The control plane, not Blueshift's API (send X-Fakeshift-Admin-Token if the server has one).
const response = await fetch(
  `${baseUrl}/_fakeshift/violations?account=${encodeURIComponent(apiKey)}`);
const found = await response.json();
for (const v of found.violations) {
  console.log(`VIOLATION ${v.method} ${v.path}: ${v.location} broke ${v.rule}: ${v.message}`);
}
console.log(`${found.count} contract violations for ${apiKey}`);
process.exit(found.count ? 1 : 0);
