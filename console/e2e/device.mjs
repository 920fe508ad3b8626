// A device publishing telemetry over plain MQTT with its device token (username = device id),
// as a site's crane black box or dust monitor does.
import mqtt from 'mqtt';

export async function publish(endpoint, device, values) {
  const client = await mqtt.connectAsync(`mqtt://${endpoint}`, {
    clientId: device.device_id,
    username: device.device_id,
    password: device.device_token,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  try {
    await client.publishAsync(device.topics.telemetry, JSON.stringify({ ts: new Date().toISOString(), ...values }), { qos: 1 });
  } finally {
    await client.endAsync();
  }
}
