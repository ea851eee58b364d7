// Round-trip latency and one-way throughput through MeshTransport (two transports, each with its
// I/O thread) next to raw libzmq (two plain threads with blocking sockets, a context each),
// plaintext and CURVE,
// on loopback TCP. Variants are interleaved round by round so that a noisy machine hurts them all
// alike; the table gives medians over rounds and the ratio mesh / raw.
//
//   swift run -c release TransportBenchmark [--rounds 5] [--round-trips 5000] [--messages 100000] [--size 64]
import CZeroMQ
import Dispatch
import Foundation
import MeshTransport
import Synchronization

struct Options {
    var rounds = 5
    var roundTrips = 5000
    var messages = 100_000
    var size = 64

    init() {
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            let v = args.popFirst().flatMap(Int.init) ?? 0
            switch a {
            case "--rounds": rounds = v
            case "--round-trips": roundTrips = v
            case "--messages": messages = v
            case "--size": size = v
            default:
                print("usage: TransportBenchmark [--rounds N] [--round-trips N] [--messages N] [--size BYTES]")
                exit(64)
            }
        }
    }
}

struct Sample {
    var p50: Double  // µs
    var p99: Double  // µs
    var throughput: Double  // messages/s
}

enum Variant: String, CaseIterable {
    case rawPlain = "raw libzmq, plaintext"
    case meshPlain = "MeshTransport, plaintext"
    case rawCurve = "raw libzmq, CURVE"
    case meshCurve = "MeshTransport, CURVE"

    var curve: Bool { self == .rawCurve || self == .meshCurve }
    var baseline: Variant {
        switch self {
        case .meshPlain: .rawPlain
        case .meshCurve: .rawCurve
        default: self
        }
    }
}

let keys = ClusterSecret.generate().keys

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
}

func nanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

// MARK: Raw libzmq

final class RawSocket: @unchecked Sendable {
    let s: UnsafeMutableRawPointer
    init(_ ctx: UnsafeMutableRawPointer, _ type: Int32) { s = zmq_socket(ctx, type)! }
    func set(_ opt: Int32, _ v: Int32) { var v = v; zmq_setsockopt(s, opt, &v, 4) }
    func set(_ opt: Int32, _ b: [UInt8]) { b.withUnsafeBytes { _ = zmq_setsockopt(s, opt, $0.baseAddress, $0.count) } }
    func close() { zmq_close(s) }
    func endpoint() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        var n = buf.count
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, &buf, &n)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A ROUTER and a DEALER connected over loopback TCP, each in a context of its own, as two
/// transports (or two processes) would be.
struct RawPair {
    let router: RawSocket
    let dealer: RawSocket
    let contexts: [UnsafeMutableRawPointer]
    var r: RawSocket { router }
    var d: RawSocket { dealer }
    func close() {
        router.close(); dealer.close()
        for c in contexts { zmq_ctx_term(c) }
    }
}

func rawPair(curve: Bool, unboundedQueues: Bool = false) -> RawPair {
    let cr = zmq_ctx_new()!, cd = zmq_ctx_new()!
    let r = RawSocket(cr, ZMQ_ROUTER), d = RawSocket(cd, ZMQ_DEALER)
    for s in [r, d] { s.set(ZMQ_LINGER, 0) }
    r.set(ZMQ_SNDHWM, unboundedQueues ? 0 : 10_000); r.set(ZMQ_RCVHWM, unboundedQueues ? 0 : 10_000)
    d.set(ZMQ_SNDHWM, unboundedQueues ? 0 : 1000); d.set(ZMQ_RCVHWM, unboundedQueues ? 0 : 1000)
    if curve {
        r.set(ZMQ_CURVE_SERVER, 1)
        r.set(ZMQ_CURVE_SECRETKEY, keys.server.secretKey)
        d.set(ZMQ_CURVE_SERVERKEY, keys.server.publicKey)
        d.set(ZMQ_CURVE_PUBLICKEY, keys.peer.publicKey)
        d.set(ZMQ_CURVE_SECRETKEY, keys.peer.secretKey)
    }
    zmq_bind(r.s, "tcp://127.0.0.1:*")
    zmq_connect(d.s, r.endpoint())
    return RawPair(router: r, dealer: d, contexts: [cr, cd])
}

func rawRecv(_ s: UnsafeMutableRawPointer) -> [[UInt8]] {
    var frames: [[UInt8]] = []
    while true {
        var m = zmq_msg_t()
        zmq_msg_init(&m)
        if zmq_msg_recv(&m, s, 0) < 0 { zmq_msg_close(&m); return frames }
        frames.append([UInt8](UnsafeRawBufferPointer(start: zmq_msg_data(&m), count: zmq_msg_size(&m))))
        let more = zmq_msg_more(&m) != 0
        zmq_msg_close(&m)
        if !more { return frames }
    }
}

func rawSend(_ s: UnsafeMutableRawPointer, _ frames: [[UInt8]]) {
    for (i, f) in frames.enumerated() {
        f.withUnsafeBytes { _ = zmq_send(s, $0.baseAddress, $0.count, i < frames.count - 1 ? ZMQ_SNDMORE : 0) }
    }
}

func runRaw(curve: Bool, o: Options) -> Sample {
    let payload = [UInt8](repeating: 0x5a, count: o.size)
    // Latency: an echo thread on the ROUTER, the DEALER on this thread.
    let pair = rawPair(curve: curve)
    let r = pair.r, d = pair.d
    let total = o.roundTrips + o.roundTrips / 10
    let echo = Thread {
        for _ in 0..<total { rawSend(r.s, rawRecv(r.s)) }
    }
    echo.start()
    var rtts: [Double] = []
    for i in 0..<total {
        let t0 = nanos()
        rawSend(d.s, [payload])
        _ = rawRecv(d.s)
        if i >= o.roundTrips / 10 { rtts.append(Double(nanos() - t0) / 1000) }
    }
    pair.close()

    // Throughput: a counting thread on the ROUTER, blocking sends from this thread.
    let pair2 = rawPair(curve: curve, unboundedQueues: true)
    let r2 = pair2.r, d2 = pair2.d
    let done = DispatchSemaphore(value: 0)
    let n = o.messages
    // Let the connection (and handshake) complete before the clock starts.
    rawSend(d2.s, [payload]); _ = rawRecv(r2.s)
    let sink = Thread {
        for _ in 0..<n { _ = rawRecv(r2.s) }
        done.signal()
    }
    sink.start()
    let t0 = nanos()
    for _ in 0..<n { rawSend(d2.s, [payload]) }
    done.wait()
    let secs = Double(nanos() - t0) / 1e9
    pair2.close()
    rtts.sort()
    return Sample(p50: percentile(rtts, 0.5), p99: percentile(rtts, 0.99), throughput: Double(n) / secs)
}

// MARK: MeshTransport

final class Echo: TransportHandler {
    func received(_ m: InboundMessage, loop: TransportLoop) {
        if case .listener(let route) = m.source { loop.reply(to: route, m.frames) }
    }
}

final class Counter: TransportHandler {
    let target: Int
    let done: DispatchSemaphore
    var count = 0
    init(target: Int, done: DispatchSemaphore) { self.target = target; self.done = done }
    func received(_ m: InboundMessage, loop: TransportLoop) {
        count += 1
        if count == target { done.signal() }
    }
}

/// Sends the next request when a reply arrives, recording each round trip.
final class PingPong: TransportHandler {
    let total: Int
    let payload: [UInt8]
    let done: DispatchSemaphore
    let results: Shared<[Double]>
    var rtts: [Double] = []
    var sentAt: UInt64 = 0
    var count = 0
    init(total: Int, payload: [UInt8], done: DispatchSemaphore, results: Shared<[Double]>) {
        self.total = total; self.payload = payload; self.done = done; self.results = results
    }
    func start(_ loop: TransportLoop) {
        sentAt = nanos()
        loop.send(to: "s", [payload])
    }
    func received(_ m: InboundMessage, loop: TransportLoop) {
        rtts.append(Double(nanos() - sentAt) / 1000)
        count += 1
        if count == total {
            let r = rtts
            results.value.withLock { $0 = r }
            done.signal()
        } else {
            start(loop)
        }
    }
}

func meshSecurity(_ curve: Bool) -> TransportSecurity { curve ? .curve(keys) : .plaintext }

func waitConnected(_ t: Transport) {
    while !((try? t.run { $0.isConnected("s") }) ?? false) { usleep(1000) }
}

func runMesh(curve: Bool, o: Options) throws -> Sample {
    let payload = [UInt8](repeating: 0x5a, count: o.size)
    let total = o.roundTrips + o.roundTrips / 10

    // Latency.
    let server = try Transport(security: meshSecurity(curve)) { _ in Echo() }
    let endpoint = try server.run { try $0.listen("tcp://127.0.0.1:*") }
    let done = DispatchSemaphore(value: 0)
    let results = Shared<[Double]>([])
    let client = try Transport(security: meshSecurity(curve)) { _ in
        PingPong(total: total, payload: payload, done: done, results: results)
    }
    try client.run { try $0.connect("s", endpoint: endpoint) }
    waitConnected(client)
    client.execute { loop in (loop.handler as! PingPong).start(loop) }
    done.wait()
    var rtts = Array(results.value.withLock { $0 }.dropFirst(o.roundTrips / 10))
    client.shutdown(); server.shutdown()

    // Throughput, with unbounded queues on both sides (as for raw libzmq), so that what is measured
    // is the transport and not how a sender waits for room in a full queue.
    var unbounded = TransportSettings()
    unbounded.peerHighWaterMark = 0
    unbounded.listenerHighWaterMark = 0
    let n = o.messages
    let sunk = DispatchSemaphore(value: 0)
    let sink = try Transport(settings: unbounded, security: meshSecurity(curve)) { _ in Counter(target: n + 1, done: sunk) }
    let sinkEndpoint = try sink.run { try $0.listen("tcp://127.0.0.1:*") }
    let source = try Transport(settings: unbounded, security: meshSecurity(curve))
    try source.run { try $0.connect("s", endpoint: sinkEndpoint) }
    waitConnected(source)
    _ = try source.run { $0.send(to: "s", [payload]) }
    let t0 = nanos()
    source.execute { loop in
        for _ in 0..<n {
            while loop.send(to: "s", [payload]) == .wouldBlock { sched_yield() }
        }
    }
    sunk.wait()
    let secs = Double(nanos() - t0) / 1e9
    source.shutdown(); sink.shutdown()
    rtts.sort()
    return Sample(p50: percentile(rtts, 0.5), p99: percentile(rtts, 0.99), throughput: Double(n) / secs)
}

// MARK: Main

let o = Options()
print("TransportBenchmark: loopback TCP, \(o.size)-byte messages; \(o.rounds) rounds, each: \(o.roundTrips) round trips (after \(o.roundTrips / 10) warm-up) and \(o.messages) one-way messages")
print("libzmq \(ZeroMQ.version.major).\(ZeroMQ.version.minor).\(ZeroMQ.version.patch), CURVE \(ZeroMQ.hasCurve ? "available" : "MISSING"); \(ProcessInfo.processInfo.activeProcessorCount) cores")
var samples: [Variant: [Sample]] = [:]
for round in 1...o.rounds {
    for v in Variant.allCases {
        let s = v == .rawPlain || v == .rawCurve ? runRaw(curve: v.curve, o: o) : try runMesh(curve: v.curve, o: o)
        samples[v, default: []].append(s)
    }
    print("round \(round)/\(o.rounds) done")
}

func fmt(_ x: Double, _ w: Int = 10, _ d: Int = 1) -> String {
    let s = String(format: "%.\(d)f", x)
    return String(repeating: " ", count: max(0, w - s.count)) + s
}

print("")
print("medians over \(o.rounds) rounds         rtt p50 µs   rtt p99 µs     msgs/s    p50 ratio  p99 ratio  rate ratio")
for v in Variant.allCases {
    let s = samples[v]!
    let p50 = median(s.map(\.p50)), p99 = median(s.map(\.p99)), tp = median(s.map(\.throughput))
    let b = samples[v.baseline]!
    let bp50 = median(b.map(\.p50)), bp99 = median(b.map(\.p99)), btp = median(b.map(\.throughput))
    let name = v.rawValue.padding(toLength: 32, withPad: " ", startingAt: 0)
    let ratios = v == v.baseline ? "   (baseline)" : "\(fmt(p50 / bp50, 10, 2)) \(fmt(p99 / bp99, 10, 2)) \(fmt(tp / btp, 11, 2))"
    print("\(name)\(fmt(p50, 11, 1)) \(fmt(p99, 12, 1)) \(fmt(tp, 10, 0))   \(ratios)")
}
