// The Node.js contender: the `http` module returning the same bytes and headers from memory.
// Usage: node node_server.js PORT BODY_FILE HEADERS_JSON_FILE
"use strict";
const fs = require("fs");
const http = require("http");

const [port, bodyFile, headersFile] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const headers = JSON.parse(fs.readFileSync(headersFile, "utf8"));
const ok = { ...headers["200"], "Content-Length": String(body.length) };
const notModified = headers["304"];
const etag = headers["etag"];

const server = http.createServer((req, res) => {
  if (req.url !== "/.well-known/jwks.json" || (req.method !== "GET" && req.method !== "HEAD")) {
    res.writeHead(404).end();
    return;
  }
  if (req.headers["if-none-match"] === etag) {
    res.writeHead(304, notModified).end();
    return;
  }
  res.writeHead(200, ok).end(req.method === "HEAD" ? undefined : body);
});
server.keepAliveTimeout = 5000;
server.listen(Number(port), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
