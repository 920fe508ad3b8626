// Bulk device CSVs are sent in slices (header + N rows each), so the console can show real
// progress and one slow request does not hold the whole import; the server provisions each slice
// with the same checks and is idempotent by serial, so a retried slice does no harm.

export interface CsvSlices {
  header: string;
  rows: string[];
  slices: string[];
}

export function sliceCsv(text: string, rowsPerSlice = 50): CsvSlices {
  const lines = text
    .replace(/^\uFEFF/, '')
    .split(/\r\n|\n|\r/)
    .filter((l) => l.trim() !== '');
  const [header = '', ...rows] = lines;
  const slices: string[] = [];
  for (let i = 0; i < rows.length; i += rowsPerSlice) {
    slices.push([header, ...rows.slice(i, i + rowsPerSlice)].join('\n') + '\n');
  }
  return { header, rows, slices };
}
