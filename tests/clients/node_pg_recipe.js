// docs/clients.md, node-postgres Pool: the block between the recipe markers is the documented
// recipe, verbatim. The token provider and the driver stand in for Azure Identity and an
// application, as tests/clients/harness.py does for Python (same environment, same report).
'use strict';
const { execFileSync } = require('node:child_process');

const [HOST, PORT, USER, DBNAME] = ['AAD_HOST', 'AAD_PORT', 'AAD_USER', 'AAD_DBNAME'].map((k) => process.env[k]);
const SSL = false; // loopback; the documented recipe verifies the server's certificate
const STEPS = Number(process.env.AAD_STEPS || 8);
const INTERVAL = Number(process.env.AAD_INTERVAL || 1.0);
const mint = JSON.parse(process.env.AAD_MINT);
let first = null;
let firstExpiry = null;
let tokensFetched = 0;

async function entraToken() {
  if (process.env.AAD_STATIC === '1' && first !== null) return first;
  const token = execFileSync(mint[0], mint.slice(1), { encoding: 'utf8' }).trim();
  tokensFetched += 1;
  if (first === null) {
    first = token;
    firstExpiry = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
  }
  return token;
}

// recipe: node-postgres
const { Pool } = require('pg');

// password may be an async function: the pool calls it for every new connection.
const pool = new Pool({
  host: HOST,
  port: Number(PORT),
  user: USER,
  database: DBNAME,
  password: entraToken,
  ssl: SSL,
  max: 10,
});
// end recipe

// An idle client that the server ends must not take the program down.
pool.on('error', () => {});

async function main() {
  const opened = new Map();
  const errors = [];
  for (let step = 1; step <= STEPS; step += 1) {
    const clients = [];
    try {
      for (let i = 0; i < step; i += 1) clients.push(await pool.connect());
      for (const c of clients) {
        const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        if (!opened.has(pid)) opened.set(pid, Date.now() / 1000);
      }
    } catch (e) {
      errors.push(`${e.name}: ${e.message}`.slice(0, 300));
    } finally {
      for (const c of clients) c.release();
    }
    await new Promise((r) => setTimeout(r, INTERVAL * 1000));
  }
  const after = [...opened.values()].filter((t) => firstExpiry !== null && t > firstExpiry + 0.5).length;
  console.log(JSON.stringify({ connections: opened.size, tokens: tokensFetched, after_first_expiry: after, errors }));
  await pool.end();
}

main();
