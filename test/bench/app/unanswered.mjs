// Does the client's postgres.js driver answer every call while its sessions
// are terminated again and again?  LOOPS query loops share the driver (its
// pool of 4); every INTERVAL ms an admin connection terminates all of the
// driver's sessions; after SECONDS, the loops stop.  With TIMEOUT (ms) each
// call is given that timeout (QueryOptions.timeout).  Prints the calls
// answered and failed, the slowest call that settled, and how many never
// settled (it waits 40 s more for them).
//
//   node test/bench/app/unanswered.mjs [LOOPS [SECONDS [INTERVAL [TIMEOUT]]]]
//
// against the server of PGHOST, PGPORT, PGUSER, PGDATABASE (any database:
// it runs pg_sleep only), with clients/node built (npm run build there).
import { postgresDriver } from '../../../clients/node/dist/postgres.js';
import postgres from '../../../clients/node/node_modules/postgres/src/index.js';

const [loops = 36, seconds = 60, interval = 700, timeout] = process.argv.slice(2).map(Number);
const app = 'immich_jobs_unanswered';
const driver = postgresDriver({ options: { connection: { application_name: app } } });
const admin = postgres({ max: 1, fetch_types: false, onnotice: () => undefined });
const options = timeout > 0 ? { timeout } : undefined;
const stop = Date.now() + seconds * 1000;
const pending = new Set();
let answered = 0;
let failed = 0;
let slowest = 0;

async function loop() {
  while (Date.now() < stop) {
    const call = { t0: Date.now() };
    pending.add(call);
    try {
      await driver.query('SELECT pg_catalog.pg_sleep(0.002)', [], options);
      answered++;
    } catch {
      failed++;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    pending.delete(call);
    slowest = Math.max(slowest, Date.now() - call.t0);
  }
}

const terminator = setInterval(() => {
  admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${app}`
    .catch(() => undefined);
}, interval);
const all = Promise.all(Array.from({ length: loops }, loop)).then(() => true);
const settled = await Promise.race([all, new Promise((resolve) => setTimeout(() => resolve(false), (seconds + 40) * 1000))]);
clearInterval(terminator);
console.log(`${loops} loops, ${seconds} s, sessions terminated every ${interval} ms, ` +
  `timeout ${options ? `${timeout} ms` : 'none'}: ${answered} answered, ${failed} failed, ` +
  `slowest settled ${slowest} ms, never settled ${settled ? 0 : pending.size}`);
process.exit(0);
