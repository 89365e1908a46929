/**
 * The sponsor bundle holds roots; clients often present a leaf and the intermediate that issued it.
 * A reload that changes the bundle must then judge the whole chain: a client whose root stays keeps
 * its connections (a review found the first version cut them when the connection was a resumed
 * session, which keeps the leaf but not the intermediate), and one whose root was taken out loses
 * them all, a resumed session's included: the gateway completes its chain with the intermediate its
 * full handshake sent (the version before kept it to its lifetime, not knowing its root).
 */
import t from 'tap'
import { createCa, DEV_LEAF_SPECS, issueCertificate } from '../../src/pki/dev-pki.js'
import { Harness } from '../helpers/harness.js'
import { openSponsorConnection, reloadSponsorBundle } from '../helpers/sponsor-connection.js'

t.test('a chain through an intermediate is judged whole when a reload changes the sponsor bundle', async (t) => {
  const h = await Harness.start()
  t.teardown(() => h.close())
  const intermediate = createCa('Sponsor issuing CA', { issuer: h.pki.sponsorCa })
  const leaf = issueCertificate(intermediate, { ...DEV_LEAF_SPECS.sponsorClient })
  const client = { certPem: `${leaf.certPem}${intermediate.certPem}`, keyPem: leaf.keyPem }

  const open = (session?: Buffer) => openSponsorConnection(h, client, session)
  const withClientCa = async (pem: string) => t.match(await reloadSponsorBundle(h, pem), { ok: true })
  const settle = () => new Promise((r) => setTimeout(r, 300))

  const full = await open()
  t.notOk(full.reused)
  t.match(await full.ask(), /^HTTP\/1\.1 200 /, 'served through the intermediate')
  const resumed = await open(full.session())
  t.ok(resumed.reused, 'a second connection resumes the first one’s session')
  t.match(await resumed.ask(), /^HTTP\/1\.1 200 /)

  // Another root added beside the client's: nothing is cut.
  await withClientCa(`${h.pki.sponsorCa.certPem}${createCa('Another sponsor CA').certPem}`)
  await settle()
  t.match(await full.ask(), /^HTTP\/1\.1 200 /, 'the full-handshake connection goes on')
  t.match(await resumed.ask(), /^HTTP\/1\.1 200 /, 'and the resumed one')

  // The client's root taken out.
  await withClientCa(createCa('Yet another sponsor CA').certPem)
  await settle()
  t.ok(full.closed(), 'the full-handshake connection, whose chain reached the root, is closed')
  t.ok(resumed.closed(), 'so is the resumed one, its chain completed by the intermediate remembered from the full handshake')
  const again = await open()
  t.equal(await again.ask(), '', 'a new connection of that client is refused')
})
