// Erase a person from Blueshift with Node's built-in fetch (Node 18+), pointed at fakeshift:
//   BLUESHIFT_BASE_URL=http://127.0.0.1:8080 BLUESHIFT_API_KEY=demo node erase.mjs ann@example.com
// Prints one JSON line per call: {"call": ..., "status": ..., "body": ...}.

const baseUrl = (process.env.BLUESHIFT_BASE_URL ?? "https://api.getblueshift.com").replace(/\/$/, "");
const apiKey = process.env.BLUESHIFT_API_KEY;
const email = process.argv[2];
if (!apiKey || !email) {
  console.error("usage: BLUESHIFT_API_KEY=... node erase.mjs EMAIL");
  process.exit(2);
}
// Blueshift: HTTP Basic with the API key as user name and an empty password.
const authorization = "Basic " + Buffer.from(`${apiKey}:`).toString("base64");

async function post(call, path, body) {
  const response = await fetch(baseUrl + path, {
    method: "POST",
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  console.log(JSON.stringify({ call, status: response.status, body: answer }));
  return response.status;
}

// Each call deletes up to 50 profiles with the email; 404 means none is left.
let calls = 0;
while (calls < 1000) {
  const status = await post("delete", "/api/v1/customers/delete",
                            { email, delete_all_matching_customers: true });
  if (status === 404) break;
  if (status !== 200) process.exit(1);
  calls += 1;
}
if (await post("forget", "/api/v1/customers/forget", { email }) !== 200) process.exit(1);
