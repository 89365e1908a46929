/**
 * With record binding, every sealed value of a record carries the record's id in its protected
 * header (`ecl.rid`), which is base64url, not encrypted. A field list that can match the id member
 * itself would copy the sealed value, in clear, into the header of every value of its record: such
 * a configuration is refused at boot.
 */
import t from 'tap'
import { compileFieldRules } from '../src/transform/json-fields.js'

const compile = (fields: string[], records: { pattern: string; id: string }) =>
  compileFieldRules({ fields, records, format: 'auto', maxValueBytes: 65_536, maxRecordBytes: 1_048_576, maxFieldsPerRecord: 1000 })

t.test('a field that can match the records’ id member is refused; any other compiles', async (t) => {
  for (const [fields, records] of [
    [['/records/*/passportNumber', '/records/*/name'], { pattern: '/records/*', id: 'passportNumber' }],
    [['/records/*/*'], { pattern: '/records/*', id: 'id' }],
    [['/records/0/id'], { pattern: '/records/*', id: 'id' }],
    // NDJSON, each line a record.
    [['/id'], { pattern: '', id: 'id' }],
    // A name at any depth is also the id's.
    [['/**/id'], { pattern: '/records/*', id: 'id' }],
    [['/records/**/id'], { pattern: '/records/*', id: 'id' }],
    [['/**/*'], { pattern: '', id: 'id' }],
  ] as Array<[string[], { pattern: string; id: string }]>) {
    t.throws(() => compile(fields, records), { code: 'config_invalid', message: new RegExp(`can match the records' id member "${records.id}", which is bound in plaintext`) }, fields.join(', '))
  }
  t.doesNotThrow(() => compile(['/records/*/holder/passportNumber', '/records/*/name'], { pattern: '/records/*', id: 'id' }), 'a field beside the id')
  t.doesNotThrow(() => compile(['/records/*/ids'], { pattern: '/records/*', id: 'id' }), 'a member whose name only starts like the id')
  t.doesNotThrow(() => compile(['/**/name'], { pattern: '/records/*', id: 'id' }), 'a name at any depth beside the id')
  t.doesNotThrow(() => compile(['/meta/**/id'], { pattern: '/records/*', id: 'id' }), 'ids at any depth elsewhere than the records')
})
