/**
 * `buf` cut at `cuts` (each taken modulo `buf.length + 1`, sorted, duplicates dropped): the chunkings
 * that property tests feed to stream transforms, as a socket might deliver them.
 */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let prev = 0
  for (const p of points) {
    if (p > prev) out.push(buf.subarray(prev, p))
    prev = Math.max(prev, p)
  }
  if (prev < buf.length) out.push(buf.subarray(prev))
  return out
}
