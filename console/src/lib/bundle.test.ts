import { describe, expect, it } from 'vitest';
import { strFromU8, unzipSync } from 'fflate';
import { deviceFiles, zip } from './bundle';

const creds = {
  device_id: 'dev-1',
  certificate_id: 'c1',
  certificate_pem: '-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n',
  private_key_pem: '-----BEGIN PRIVATE KEY-----\nB\n-----END PRIVATE KEY-----\n',
  device_token: 'tok',
  ca_pem: '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n',
  mqtt_endpoint: 'mqtts://127.0.0.1:8883',
  topics: { telemetry: 'ss/i/p/dev-1/telemetry', events: 'ss/i/p/dev-1/events', cmd: 'ss/i/p/dev-1/cmd' },
};

describe('device bundle', () => {
  it('holds every credential and the endpoint in a zip', async () => {
    const blob = zip(deviceFiles(creds, 'dev-1/'));
    const entries = unzipSync(new Uint8Array(await blob.arrayBuffer()));
    expect(Object.keys(entries).sort()).toEqual([
      'dev-1/ca.pem', 'dev-1/certificate.pem', 'dev-1/device_token.txt', 'dev-1/endpoints.json', 'dev-1/private_key.pem', 'dev-1/topics.json',
    ]);
    expect(strFromU8(entries['dev-1/private_key.pem'])).toBe(creds.private_key_pem);
    expect(JSON.parse(strFromU8(entries['dev-1/endpoints.json'])).mqtt_endpoint).toBe('mqtts://127.0.0.1:8883');
  });
  it('leaves out the token where the edition gives none', () => {
    expect(Object.keys(deviceFiles({ ...creds, device_token: null }))).not.toContain('device_token.txt');
  });
});
