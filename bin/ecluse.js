#!/usr/bin/env node
// The installed `ecluse` command: the compiled CLI (`npm run build` writes dist/). `main` never
// throws and never exits by itself, so `serve` keeps running on its listeners.
import { main } from '../dist/cli.js'

process.exitCode = await main(process.argv.slice(2))
