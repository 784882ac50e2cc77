#!/usr/bin/env node
// A libutp peer (through utp-native) for NatKit's interop tests and benchmarks.
//
//   node utp-peer.js --mode listen|connect [--host 127.0.0.1] [--port 0] [--send BYTES] [--seed N]
//                    [--close first|after] [--timeout-ms 60000]
//
// Sends BYTES of deterministic data (xorshift32 from --seed, low byte of each state: the same generator as
// NatKit.Utp.Tests' TestData.Generate), hashes everything it receives, and closes:
//   --close first  ends its side (FIN) as soon as its data is written;
//   --close after  ends its side only after the peer's FIN (libutp cannot send after it has received a FIN).
//   --bench 1      throughput mode: the receiver does not hash (the hash printed is then of nothing). The sender
//                  still generates its data: fed one fixed chunk at full speed, libutp measured about 3x slower
//                  on loopback (more loss, slow recovery), so the benchmark keeps the pacing that suits it best.
// Prints "listening PORT" once bound (listen mode), then "received BYTES SHA256 SECONDS" when the peer's FIN
// arrives, and "closed" when the connection is fully closed; exits 0. Any error prints "error ..." and exits 1.
'use strict'
const utp = require('utp-native')
const crypto = require('crypto')
const fs = require('fs')

// Synchronous writes: process.exit() right after console.log can lose a line when stdout is a pipe.
function say (line) { fs.writeSync(1, line + '\n') }

const args = {}
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1]
const mode = args.mode || 'connect'
const host = args.host || '127.0.0.1'
const port = parseInt(args.port || '0', 10)
const sendBytes = parseInt(args.send || '0', 10)
const seed = (parseInt(args.seed || '1', 10) >>> 0) || 0x9E3779B9
const closeMode = args.close || 'first'
const timeoutMs = parseInt(args['timeout-ms'] || '60000', 10)
const bench = args.bench === '1'

const timer = setTimeout(() => { say('error timeout'); process.exit(2) }, timeoutMs)

function generator (seed) {
  let x = seed >>> 0
  return function fill (buf) {
    for (let i = 0; i < buf.length; i++) {
      x ^= x << 13; x >>>= 0
      x ^= x >>> 17
      x ^= x << 5; x >>>= 0
      buf[i] = x & 0xff
    }
  }
}

function run (socket, onDone) {
  const hash = crypto.createHash('sha256')
  let received = 0
  let start = 0
  let ended = false
  let finished = false
  const fill = generator(seed)

  socket.on('data', (d) => {
    if (!start) start = process.hrtime.bigint()
    received += d.length
    if (!bench) hash.update(d)
  })
  socket.on('error', (e) => { say('error ' + e.message); process.exit(1) })
  socket.on('end', () => {
    const secs = start ? Number(process.hrtime.bigint() - start) / 1e9 : 0
    say(`received ${received} ${hash.digest('hex')} ${secs.toFixed(6)}`)
    ended = true
    if (closeMode === 'after' && finished) socket.end()
  })
  socket.on('close', () => { say('closed'); clearTimeout(timer); onDone() })

  let left = sendBytes
  function pump () {
    while (left > 0) {
      const chunk = Buffer.allocUnsafe(Math.min(65536, left))
      fill(chunk)
      left -= chunk.length
      if (!socket.write(chunk)) { socket.once('drain', pump); return }
    }
    finished = true
    if (closeMode === 'first' || ended) socket.end()
  }
  pump()
}

if (mode === 'listen') {
  const server = utp.createServer((socket) => run(socket, () => { server.close(); process.exit(0) }))
  server.on('error', (e) => { say('error ' + e.message); process.exit(1) })
  server.listen(port, host, () => say('listening ' + server.address().port))
} else {
  const socket = utp.connect(port, host)
  run(socket, () => process.exit(0))
}
