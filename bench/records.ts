/**
 * Realistic accreditation records for the benchmarks: about 1 KiB of JSON each, six sensitive fields
 * (name, birth date, passport number, e-mail, phone, police unit) among ordinary ones, produced by a
 * seeded generator so every run, and every machine, sends the same bytes.
 *
 * The output is pinned by `test/bench-records-are-deterministic.test.ts`: changing the generator
 * changes the input of every benchmark figure, so do it deliberately and update the pinned digest.
 *
 * @example
 * import { generateRecords, SENSITIVE_POINTERS } from './records.js'
 * const bodies = generateRecords(256).map((r) => JSON.stringify(r))   // ~1 KiB each
 * // seal-fields routes use SENSITIVE_POINTERS as their targets
 */

/** The seed every scenario uses unless it asks for another. */
export const DEFAULT_SEED = 0x0ec1_05e

/** The six sensitive fields, as RFC 6901 JSON Pointers into a record. */
export const SENSITIVE_POINTERS = [
  '/holder/name',
  '/holder/birthDate',
  '/holder/passportNumber',
  '/holder/email',
  '/holder/phone',
  '/vetting/policeUnit',
] as const

/** One accreditation record, as the trusted service stores it. */
export interface AccreditationRecord {
  id: string
  status: 'pending' | 'approved' | 'revoked'
  category: string
  event: { id: string; name: string; venue: string; from: string; to: string }
  holder: {
    name: string
    birthDate: string
    passportNumber: string
    nationality: string
    email: string
    phone: string
    organisation: string
    role: string
  }
  vetting: { reference: string; policeUnit: string; decidedAt: string; level: number; officer: string }
  zones: string[]
  vehicle: { plate: string; kind: string } | null
  createdAt: string
  updatedAt: string
  notes: string
}

/**
 * A small, fast, well-distributed 32-bit PRNG (sfc32, from PractRand). Not for secrets: the point is
 * that the same seed gives the same sequence on every platform (pure 32-bit integer arithmetic).
 */
export class SeededRandom {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number) {
    this.#a = 0x9e37_79b9
    this.#b = 0x243f_6a88
    this.#c = 0xb7e1_5162
    this.#d = seed >>> 0
    // Discard the first outputs: sfc32 needs a few rounds to mix a low-entropy seed.
    for (let i = 0; i < 15; i++) this.nextUint32()
  }

  /** The next value in [0, 2^32). */
  nextUint32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0
    this.#d = (this.#d + 1) | 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) | 0
    this.#c = (this.#c << 21) | (this.#c >>> 11)
    this.#c = (this.#c + t) | 0
    return t >>> 0
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + (this.nextUint32() % (max - min + 1))
  }

  pick<T>(items: readonly T[]): T {
    return items[this.nextUint32() % items.length]!
  }

  /** `n` characters drawn from `alphabet`. */
  chars(alphabet: string, n: number): string {
    let out = ''
    for (let i = 0; i < n; i++) out += alphabet[this.nextUint32() % alphabet.length]
    return out
  }
}

// Small vocabularies, with accents and apostrophes: UTF-8 and escaping are part of a real body.
const GIVEN = ['Amélie', 'Jean-Luc', 'Nadia', 'Océane', 'Karim', 'Sofia', 'Mathis', 'Léa', 'Yannick', 'Inès', 'Bruno', 'Chloé', 'Théo', 'Aïcha', 'Hugo', 'Zoé']
const FAMILY = ['Martin', 'Bernard', "D'Almeida", 'Lefèvre', 'Nguyen', 'Moreau', 'Fournier', 'Benali', 'Girard', 'Roux', 'Lambert', 'Bonnet', 'Müller', 'García', 'Kowalski', 'Ó Briain']
const NATIONS = ['FR', 'BE', 'CH', 'DE', 'ES', 'IT', 'PT', 'NL', 'IE', 'PL', 'MA', 'SN']
const DOMAINS = ['example.org', 'presse.example', 'staff.example.net', 'secours.example', 'traiteur.example.com']
const ORGS = ['Agence France Presse', 'Croix-Rouge française', 'Traiteur Lenôtre', 'Sécurité Événements SA', 'Radio Nova', 'Ville de Lyon', 'Transports Keolis']
const ROLES = ['journalist', 'photographer', 'caterer', 'steward', 'medic', 'driver', 'technician', 'official']
const CATEGORIES = ['press', 'staff', 'contractor', 'medical', 'security', 'official', 'guest']
const STATUSES = ['pending', 'approved', 'approved', 'approved', 'revoked'] as const
const UNITS = ['DGSI Lyon', 'SDAT Paris', 'Gendarmerie Rhône', 'SCRT Marseille', 'DDSP Nord', 'Préfecture de police – DRPP']
const EVENTS = [
  ['evt-2024-nat', 'Sommet national de la sécurité', 'Palais des Congrès, Paris'],
  ['evt-2024-fest', 'Festival des Lumières', 'Place Bellecour, Lyon'],
  ['evt-2025-cup', 'Coupe d’Europe – finale', 'Stade Vélodrome, Marseille'],
  ['evt-2025-expo', 'Salon international de l’aéronautique', 'Parc des expositions, Le Bourget'],
] as const
const ZONES = ['A', 'B', 'C', 'P1', 'P2', 'VIP', 'MEDIA', 'TECH', 'PITCH', 'BACKSTAGE']
const VEHICLES = ['car', 'van', 'motorbike', 'truck']
const NOTES = [
  'Badge à retirer au guichet nord sur présentation d’une pièce d’identité.',
  'Accès autorisé aux zones techniques uniquement en présence d’un responsable.',
  'Renouvellement demandé par l’employeur ; dossier complet reçu le jour même.',
  'Contrôle complémentaire effectué, aucune réserve formulée par le service instructeur.',
  'Le titulaire doit porter son badge de manière visible pendant toute la durée de l’événement.',
]
const DIGITS = '0123456789'
const UPPER = 'ABCDEFGHJKLMNPRSTUVWXYZ'
const LOWER = 'abcdefghijkmnopqrstuvwxyz'

/** Target size of one serialised record; notes are padded towards it (UTF-8 bytes). */
const TARGET_BYTES = 1024

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

function isoDate(year: number, month: number, day: number): string {
  return `${year}-${pad2(month)}-${pad2(day)}`
}

function isoTime(rng: SeededRandom, year: number): string {
  return `${isoDate(year, rng.int(1, 12), rng.int(1, 28))}T${pad2(rng.int(0, 23))}:${pad2(rng.int(0, 59))}:${pad2(rng.int(0, 59))}Z`
}

function ascii(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[^A-Za-z]/g, '')
    .toLowerCase()
}

/**
 * An endless, deterministic sequence of records: the same seed gives the same records, in the same
 * order, byte for byte once serialised with `JSON.stringify`.
 */
export class RecordGenerator {
  readonly #rng: SeededRandom
  #index = 0

  constructor(seed: number = DEFAULT_SEED) {
    this.#rng = new SeededRandom(seed)
  }

  next(): AccreditationRecord {
    const rng = this.#rng
    const i = this.#index++
    const given = rng.pick(GIVEN)
    const family = rng.pick(FAMILY)
    const [eventId, eventName, venue] = rng.pick(EVENTS)
    const year = eventId.includes('2024') ? 2024 : 2025
    const month = rng.int(1, 11)
    const day = rng.int(1, 20)
    const zones: string[] = []
    for (let z = rng.int(1, 4); z > 0; z--) {
      const zone = rng.pick(ZONES)
      if (!zones.includes(zone)) zones.push(zone)
    }
    const record: AccreditationRecord = {
      id: `acc-${year}-${String(i).padStart(6, '0')}-${rng.chars(LOWER + DIGITS, 6)}`,
      status: rng.pick(STATUSES),
      category: rng.pick(CATEGORIES),
      event: { id: eventId, name: eventName, venue, from: isoDate(year, month, day), to: isoDate(year, month, day + rng.int(1, 7)) },
      holder: {
        name: `${given} ${family}`,
        birthDate: isoDate(rng.int(1950, 2004), rng.int(1, 12), rng.int(1, 28)),
        passportNumber: `${rng.chars(DIGITS, 2)}${rng.chars(UPPER, 2)}${rng.chars(DIGITS, 5)}`,
        nationality: rng.pick(NATIONS),
        email: `${ascii(given)}.${ascii(family)}${rng.int(1, 99)}@${rng.pick(DOMAINS)}`,
        phone: `+33 ${rng.int(6, 7)} ${rng.chars(DIGITS, 2)} ${rng.chars(DIGITS, 2)} ${rng.chars(DIGITS, 2)} ${rng.chars(DIGITS, 2)}`,
        organisation: rng.pick(ORGS),
        role: rng.pick(ROLES),
      },
      vetting: {
        reference: `VET-${year}-${rng.chars(DIGITS, 7)}`,
        policeUnit: rng.pick(UNITS),
        decidedAt: isoTime(rng, year),
        level: rng.int(1, 3),
        officer: `officer-${rng.int(100, 999)}`,
      },
      zones,
      vehicle: rng.int(0, 2) === 0 ? null : { plate: `${rng.chars(UPPER, 2)}-${rng.chars(DIGITS, 3)}-${rng.chars(UPPER, 2)}`, kind: rng.pick(VEHICLES) },
      createdAt: isoTime(rng, year - 1),
      updatedAt: isoTime(rng, year),
      notes: '',
    }
    // Notes fill the record to about TARGET_BYTES: whole sentences, then a few words of the next one.
    let size = Buffer.byteLength(JSON.stringify(record))
    const notes: string[] = []
    while (size < TARGET_BYTES - 40) {
      const sentence = rng.pick(NOTES)
      const room = TARGET_BYTES - size
      const piece = Buffer.byteLength(sentence) + 1 <= room ? sentence : sentence.split(' ').slice(0, rng.int(2, 5)).join(' ')
      notes.push(piece)
      size += Buffer.byteLength(piece) + 1
    }
    record.notes = notes.join(' ')
    return record
  }
}

/** `count` records from `seed` (see {@link RecordGenerator}). */
export function generateRecords(count: number, seed: number = DEFAULT_SEED): AccreditationRecord[] {
  const gen = new RecordGenerator(seed)
  const out: AccreditationRecord[] = []
  for (let i = 0; i < count; i++) out.push(gen.next())
  return out
}

/** The value at an RFC 6901 pointer (no `~` escapes needed for our pointers), or undefined. */
export function valueAt(record: unknown, pointer: string): unknown {
  let cur: unknown = record
  for (const segment of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[segment]
  }
  return cur
}
