#!/usr/bin/env node
// The installed `ecluse` command: the compiled CLI (`npm run build` writes dist/). `main` never
// throws and never exits by itself, so `serve` keeps running on its listeners; `runProgram` sets the
// exit code, failed when standard output could not be written.
import { runProgram } from '../dist/cli.js'

await runProgram(process.argv.slice(2))
