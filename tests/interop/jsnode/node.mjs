// A js-libp2p gossipsub node for the Keyswitch interop test (tests/interop/test_js_gossip.py).
//
// libp2p 2.x over TCP + Noise + Yamux with identify, ping and @chainsafe/libp2p-gossipsub 14
// (stock settings, strict signing, no validator of its own: it relays what it receives).
//
//   node node.mjs [--listen MA] [--dial MA]... [--topic T]... [--follow]
//
// --listen  the address to listen on (default /ip4/127.0.0.1/tcp/0)
// --dial    a peer to dial at start (repeatable; redialled every 2 s while not connected)
// --topic   a topic to subscribe to (repeatable)
// --follow  also subscribe to every topic a connected peer subscribes to (a plain relay)
//
// Writes one JSON object per line on stdout: {"event": "listening", "peer": ..., "addrs": [...]} first,
// then "connect"/"disconnect" (peer), "subscribe" (topic), "graft"/"prune" (peer, topic),
// "mesh" (topic -> sorted peer ids, whenever it changes), "message" (topic, from, forwarder, seqno,
// size, sha256 and the data in hex), "published" (topic, recipients), "error" (what, reason).
// Reads one JSON command per line on stdin:
//   {"cmd": "publish", "topic": T, "hex": "00ff..."}   publish these bytes (signed by this node)
//   {"cmd": "status"}                                   print {"event": "status", peers, mesh, topics, scores}
//   {"cmd": "stop"}                                     stop and exit 0 (as on stdin EOF or SIGTERM)
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { multiaddr } from '@multiformats/multiaddr'

// Node 20 has no Promise.withResolvers (Node 22 has); mortice -> it-queue 1.1.x (every release of it)
// calls it when the peer store takes a lock. Modules only call it at run time, after this line.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const MAX_PUBLISH_BYTES = 1 << 20 // a command's payload: at most 1 MiB (gossipsub's default max message size)

function parseArgs (argv) {
  const opts = { listen: '/ip4/127.0.0.1/tcp/0', dial: [], topics: [], follow: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--listen') opts.listen = next()
    else if (a === '--dial') opts.dial.push(next())
    else if (a === '--topic') opts.topics.push(next())
    else if (a === '--follow') opts.follow = true
    else throw new Error(`unknown argument ${a}`)
  }
  return opts
}

const emit = (obj) => process.stdout.write(JSON.stringify({ t: Date.now() / 1000, ...obj }) + '\n')
const hex = (u8) => Buffer.from(u8 ?? new Uint8Array()).toString('hex')

const opts = parseArgs(process.argv.slice(2))
const node = await createLibp2p({
  addresses: { listen: [opts.listen] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
  }
})
const ps = node.services.pubsub

node.addEventListener('peer:connect', (evt) => emit({ event: 'connect', peer: evt.detail.toString() }))
node.addEventListener('peer:disconnect', (evt) => emit({ event: 'disconnect', peer: evt.detail.toString() }))
node.addEventListener('peer:identify', (evt) => emit({
  event: 'identify',
  peer: evt.detail.peerId.toString(),
  agent: evt.detail.agentVersion ?? '',
  protocols: evt.detail.protocols ?? []
}))

const subscribed = new Set()
function subscribe (topic) {
  if (subscribed.has(topic)) return
  subscribed.add(topic)
  ps.subscribe(topic)
  emit({ event: 'subscribe', topic })
}

ps.addEventListener('subscription-change', (evt) => {
  const { peerId, subscriptions } = evt.detail
  emit({ event: 'peer-subscriptions', peer: peerId.toString(), subscriptions: subscriptions.map((s) => [s.topic, s.subscribe]) })
  if (opts.follow) {
    for (const s of subscriptions) if (s.subscribe) subscribe(s.topic)
  }
})
ps.addEventListener('gossipsub:graft', (evt) => emit({ event: 'graft', peer: evt.detail.peerId, topic: evt.detail.topic, direction: evt.detail.direction }))
// backoff: ms until this node may GRAFT the peer again on the topic (after a PRUNE), score: its score of the peer
const backoffOf = (peer, topic) => { const e = ps.backoff?.get(topic)?.get(peer); return typeof e === 'number' ? e - Date.now() : null }
ps.addEventListener('gossipsub:prune', (evt) => emit({
  event: 'prune', peer: evt.detail.peerId, topic: evt.detail.topic, direction: evt.detail.direction,
  backoff: backoffOf(evt.detail.peerId, evt.detail.topic), score: ps.getScore(evt.detail.peerId)
}))
ps.addEventListener('gossipsub:message', (evt) => {
  const { propagationSource, msgId, msg } = evt.detail
  emit({
    event: 'message',
    topic: msg.topic,
    from: msg.type === 'signed' ? msg.from.toString() : '',
    forwarder: propagationSource.toString(),
    seqno: msg.type === 'signed' ? msg.sequenceNumber.toString() : '',
    id: msgId,
    size: msg.data.length,
    sha256: createHash('sha256').update(msg.data).digest('hex'),
    hex: hex(msg.data)
  })
})

for (const t of opts.topics) subscribe(t)
await node.start()
emit({ event: 'listening', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map((a) => a.toString()) })

// dial the given peers, and again while not connected (a daemon may start after us)
async function dialAll () {
  for (const a of opts.dial) {
    const ma = multiaddr(a)
    const pid = ma.getPeerId()
    if (pid && node.getConnections().some((c) => c.remotePeer.toString() === pid)) continue
    try {
      await node.dial(ma)
    } catch (err) {
      emit({ event: 'error', what: `dial ${a}`, reason: String(err?.message ?? err).slice(0, 200) })
    }
  }
}
await dialAll()
const redial = setInterval(dialAll, 2000)

// mesh changes, once a second
let lastMesh = ''
const meshTick = setInterval(() => {
  const mesh = {}
  for (const t of [...subscribed].sort()) mesh[t] = ps.getMeshPeers(t).map(String).sort()
  const s = JSON.stringify(mesh)
  if (s !== lastMesh) {
    lastMesh = s
    emit({ event: 'mesh', mesh })
  }
}, 1000)

let stopping = false
async function stop (code = 0) {
  if (stopping) return
  stopping = true
  clearInterval(redial)
  clearInterval(meshTick)
  try {
    await node.stop()
  } finally {
    emit({ event: 'stopped' })
    process.exit(code)
  }
}
process.on('SIGTERM', () => { stop(0) })
process.on('SIGINT', () => { stop(0) })

async function command (line) {
  let c
  try {
    c = JSON.parse(line)
  } catch (err) {
    emit({ event: 'error', what: 'command', reason: 'not a JSON line' })
    return
  }
  if (c.cmd === 'publish') {
    if (typeof c.topic !== 'string' || typeof c.hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(c.hex) ||
        c.hex.length / 2 > MAX_PUBLISH_BYTES) {
      emit({ event: 'error', what: 'publish', reason: `needs a topic and at most ${MAX_PUBLISH_BYTES} bytes of even-length hex` })
      return
    }
    try {
      const res = await ps.publish(c.topic, Buffer.from(c.hex, 'hex'))
      emit({ event: 'published', topic: c.topic, size: c.hex.length / 2, recipients: res.recipients.map(String) })
    } catch (err) {
      emit({ event: 'error', what: 'publish', reason: String(err?.message ?? err).slice(0, 200) })
    }
  } else if (c.cmd === 'status') {
    const mesh = {}
    for (const t of [...subscribed].sort()) mesh[t] = ps.getMeshPeers(t).map(String).sort()
    const scores = {}
    for (const p of node.getPeers()) scores[p.toString()] = ps.getScore(p.toString())
    emit({ event: 'status', peers: node.getPeers().map(String).sort(), mesh, topics: [...subscribed].sort(), scores })
  } else if (c.cmd === 'stop') {
    await stop(0)
  } else {
    emit({ event: 'error', what: 'command', reason: `unknown cmd ${JSON.stringify(c.cmd)}`.slice(0, 200) })
  }
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => { command(line) })
rl.on('close', () => { stop(0) })
