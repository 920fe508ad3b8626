// A device's credentials, answered once at provisioning, as one ZIP built in the browser: the
// certificate, the private key, the CA, the plain-MQTT token, the endpoint and the topics.

import { strToU8, zipSync } from 'fflate';
import type { Schemas } from '@/api/client';

export interface Credentials {
  device_id: string;
  certificate_id?: string;
  certificate_pem: string;
  private_key_pem: string;
  device_token?: string | null;
  ca_pem: string;
  mqtt_endpoint: string;
  topics?: Schemas['TopicsView'] | null;
}

/** The files of one device, under `prefix` (a folder per device in bulk bundles). */
export function deviceFiles(c: Credentials, prefix = ''): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {
    [`${prefix}certificate.pem`]: strToU8(c.certificate_pem),
    [`${prefix}private_key.pem`]: strToU8(c.private_key_pem),
    [`${prefix}ca.pem`]: strToU8(c.ca_pem),
    [`${prefix}endpoints.json`]: strToU8(
      JSON.stringify({ device_id: c.device_id, certificate_id: c.certificate_id, mqtt_endpoint: c.mqtt_endpoint, topics: c.topics ?? null }, null, 2) + '\n',
    ),
  };
  if (c.topics) files[`${prefix}topics.json`] = strToU8(JSON.stringify(c.topics, null, 2) + '\n');
  if (c.device_token) files[`${prefix}device_token.txt`] = strToU8(`${c.device_token}\n`);
  return files;
}

export function zip(files: Record<string, Uint8Array>): Blob {
  const bytes = zipSync(files, { level: 6 });
  return new Blob([bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer], { type: 'application/zip' });
}
