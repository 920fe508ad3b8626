// Device categories: the configuration each needs at provisioning (the API's binding checks,
// DOMAIN.md §2) and the readings each reports (API.md "Device messages", DOMAIN.md §8.3).

import type { Schemas } from '@/api/client';

export type Category = Schemas['Category'];

export const CATEGORIES: Category[] = [
  'tower_crane',
  'hoist',
  'dust_noise',
  'spray',
  'access_gate',
  'camera',
  'unloading_platform',
  'ranging_inspection',
  'panorama',
];

export interface ConfigField {
  name: string;
  required: boolean;
  min: number;
  max: number;
}

export const CONFIG_FIELDS: Partial<Record<Category, ConfigField[]>> = {
  tower_crane: [
    { name: 'rated_load_t', required: true, min: 0.1, max: 100 },
    { name: 'rated_moment_tm', required: true, min: 1, max: 10000 },
    { name: 'jib_len_m', required: false, min: 1, max: 120 },
    { name: 'rated_wind_ms', required: false, min: 5, max: 30 },
  ],
  hoist: [
    { name: 'rated_load_kg', required: true, min: 50, max: 10000 },
    { name: 'rated_persons', required: true, min: 1, max: 100 },
    { name: 'max_height_m', required: false, min: 1, max: 1000 },
  ],
  unloading_platform: [{ name: 'rated_load_kg', required: true, min: 50, max: 10000 }],
  spray: [
    { name: 'start_value', required: false, min: 0, max: 10000 },
    { name: 'stop_value', required: false, min: 0, max: 10000 },
  ],
};

/** The readings shown on a device card, with their units. */
export const READINGS: Partial<Record<Category, Array<[string, string]>>> = {
  tower_crane: [
    ['load_t', 't'],
    ['radius_m', 'm'],
    ['moment_pct', '%'],
    ['wind_ms', 'm/s'],
    ['tilt_deg', '°'],
    ['mode', ''],
  ],
  hoist: [
    ['load_kg', 'kg'],
    ['persons', ''],
    ['speed_ms', 'm/s'],
    ['door_front_open', ''],
    ['door_back_open', ''],
  ],
  dust_noise: [
    ['pm10_ugm3', 'μg/m³'],
    ['pm25_ugm3', 'μg/m³'],
    ['tsp_ugm3', 'μg/m³'],
    ['noise_dba', 'dB(A)'],
    ['wind_ms', 'm/s'],
  ],
};
