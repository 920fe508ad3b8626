// Budget of the project dashboard's first load (BENCHMARKS.md): transferred JavaScript and the
// time until the live gauges show, against a `smartsite serve` on this machine, with the browser
// cache disabled, signed in. Compared in the same run: the pre-compressed gzip the server sends
// against what an identity-only client would pull.
//   node console/bench/first-load.mjs [runs]        (SMARTSITE_BIN: the server, release build)
import { setup, signIn } from '../e2e/harness.mjs';
import { publish } from '../e2e/device.mjs';

const runs = Number(process.argv[2] ?? 5);
const env = await setup('bench');
const { world, server } = env;
await publish(server.endpoints.mqtt, world.devices.tower_crane, { load_t: 3, radius_m: 20, moment_pct: 52.5, wind_ms: 3, tilt_deg: 0.1, mode: 'operating' });

async function once(encoding) {
  const page = await signIn(env, world.users.safety_officer);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  if (encoding) await cdp.send('Network.setExtraHTTPHeaders', { headers: { 'accept-encoding': encoding } });
  const type = new Map();
  let js = 0;
  let all = 0;
  cdp.on('Network.responseReceived', (e) => type.set(e.requestId, e.type));
  cdp.on('Network.loadingFinished', (e) => {
    all += e.encodedDataLength;
    if (type.get(e.requestId) === 'Script') js += e.encodedDataLength;
  });
  const start = Date.now();
  await page.goto(`${server.base}/projects/${world.project}`);
  await page.getByTestId(`gauge-${world.devices.tower_crane.device_id}-moment_pct`).getByText('52.5 %').waitFor();
  const ms = Date.now() - start;
  await page.close();
  return { ms, js, all };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
for (const [name, enc] of [['gzip', null], ['identity', 'identity']]) {
  const rs = [];
  for (let i = 0; i < runs; i++) rs.push(await once(enc));
  results[name] = rs;
  console.log(
    `${name.padEnd(8)} first load to live gauge: median ${median(rs.map((r) => r.ms))} ms (${rs.map((r) => r.ms).join(', ')}); ` +
      `JS transferred ${(median(rs.map((r) => r.js)) / 1024).toFixed(1)} KiB, everything ${(median(rs.map((r) => r.all)) / 1024).toFixed(1)} KiB`,
  );
}
await env.teardown();
