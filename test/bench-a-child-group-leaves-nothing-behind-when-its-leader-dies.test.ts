/**
 * From the re-review: the bench runs nginx as a process group, signalled as a whole, because its
 * workers outlive a killed master. A master that died first (a crash) left the runner's list, and
 * the group was never signalled: its workers stayed. A leader that exits now takes its group along.
 * Here the leader is a shell with two children of its own.
 */
import { readdirSync, readFileSync } from 'node:fs'
import t from 'tap'
import { JsonChild } from '../bench/lib/child.js'

function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => {
      try {
        return Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pid
      } catch {
        return false
      }
    })
}

function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0]
    return state !== 'Z'
  } catch {
    return false
  }
}

t.test('a group whose leader is killed is killed with it', { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const leader = new JsonChild('group', '/bin/sh', ['-c', 'sleep 600 & sleep 600 & wait'], { group: true })
  t.teardown(() => leader.kill('SIGKILL'))
  let children: number[] = []
  for (let i = 0; i < 50 && children.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 50))
    children = childrenOf(leader.pid)
  }
  t.equal(children.length, 2, 'the leader has its two children')
  // Not through the child's own methods: the leader dies as a crash would.
  process.kill(leader.pid, 'SIGKILL')
  await leader.exited()
  let left = children
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50))
    left = children.filter(alive)
  }
  t.same(left, [], 'no child of the group is left')
})
