import CZeroMQ
import Testing

@testable import MeshTransport

@Suite("Monitor events")
struct MonitorEventTests {
    static let cases: [(Int32, UInt32, MonitorEvent)] = [
        (ZMQ_EVENT_CONNECTED, 12, .connected),
        (ZMQ_EVENT_CONNECT_RETRIED, 200, .connectRetried(afterMilliseconds: 200)),
        (ZMQ_EVENT_DISCONNECTED, 12, .disconnected),
        (ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, .handshakeSucceeded),
        (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, .handshakeFailed(.authentication(status: 400))),
        (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC),
         .handshakeFailed(.protocolError(code: UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)))),
        (ZMQ_EVENT_BIND_FAILED, UInt32(EADDRINUSE), .bindFailed(errno: EADDRINUSE)),
        (0x7000, 1, .unknown(event: 0x7000, value: 1)),
    ]

    @Test("libzmq's monitor frames become typed events", arguments: cases)
    func parse(event: Int32, value: UInt32, expected: MonitorEvent) {
        let e = UInt16(event)
        let head: [UInt8] = [UInt8(e & 0xff), UInt8(e >> 8),
                             UInt8(value & 0xff), UInt8((value >> 8) & 0xff),
                             UInt8((value >> 16) & 0xff), UInt8(value >> 24)]
        let r = MonitorRecord(frames: [head, Array("tcp://127.0.0.1:1".utf8)])
        #expect(r == MonitorRecord(event: expected, endpoint: "tcp://127.0.0.1:1"))
    }

    @Test("short or missing frames are not events")
    func garbage() {
        #expect(MonitorRecord(frames: []) == nil)
        #expect(MonitorRecord(frames: [[1, 2, 3], []]) == nil)
        #expect(MonitorRecord(frames: [[1, 0, 0, 0, 0, 0]]) == nil)
    }

    @Test("key-mismatch failures are told apart from network trouble")
    func keyMismatch() {
        #expect(HandshakeFailure.authentication(status: 400).isKeyMismatch)
        #expect(HandshakeFailure.protocolError(code: UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)).isKeyMismatch)
        #expect(!HandshakeFailure.noDetail(errno: 0).isKeyMismatch)
    }
}

@Suite("Connection tracking")
struct ConnectionTrackerTests {
    func run(_ events: [MonitorEvent]) -> (ConnectionTracker, [ConnectionTracker.Change]) {
        var t = ConnectionTracker()
        let changes = events.map { t.observe($0) }
        return (t, changes)
    }

    @Test("connect then handshake: established")
    func established() {
        let (t, c) = run([.connectDelayed, .connected, .handshakeSucceeded])
        #expect(t.isEstablished)
        #expect(c.last == .established)
    }

    @Test("a hang-up during the handshake is a handshake failure (wrong server key)")
    func hangUpDuringHandshake() {
        let (t, c) = run([.connected, .disconnected])
        #expect(!t.isEstablished)
        #expect(c.last == .handshakeFailed(.noDetail(errno: 0)))
    }

    @Test("an established connection that drops is lost; refused reconnects after it are not key failures")
    func lostThenRefused() {
        let (t, c) = run([.connected, .handshakeSucceeded, .disconnected, .connectDelayed, .closed,
                          .connectRetried(afterMilliseconds: 100), .closed, .connectRetried(afterMilliseconds: 200)])
        #expect(c[2] == .lost)
        #expect(!c.dropFirst(3).contains { if case .handshakeFailed = $0 { true } else { false } })
        #expect(t.diagnosis == .refused || t.diagnosis == .handshakeIncomplete)
    }

    @Test("nothing listening: diagnosis says refused")
    func refused() {
        let (t, c) = run([.connectDelayed, .closed, .connectRetried(afterMilliseconds: 100)])
        #expect(c.allSatisfy { $0 == ConnectionTracker.Change.none })
        #expect(t.diagnosis == .refused)
    }
}

@Suite("ZAP handler decisions")
struct ZAPTests {
    let keys = ClusterSecret.generate().keys

    func request(mechanism: String, key: [UInt8]?) -> [[UInt8]] {
        var f: [[UInt8]] = [Array("1.0".utf8), [7], Array("mesh".utf8), Array("127.0.0.1".utf8), [1], Array(mechanism.utf8)]
        if let key { f.append(key) }
        return f
    }

    func handler() throws -> ZAPHandler {
        try ZAPHandler(context: Context(), allowed: TransportSecurity.curve(keys).allowedClients)
    }

    @Test("the mesh's peer and client keys are let in with their role as user id")
    func allowed() throws {
        let z = try handler()
        defer { z.socket.close() }
        let (peer, r1) = z.answer(request(mechanism: "CURVE", key: keys.peer.publicKey))
        #expect(peer[2] == Array("200".utf8) && peer[4] == Array("peer".utf8) && r1 == nil)
        let (client, _) = z.answer(request(mechanism: "CURVE", key: keys.client.publicKey))
        #expect(client[4] == Array("client".utf8))
        #expect(client[1] == [7])  // request id echoed
    }

    @Test("other keys, other mechanisms and malformed requests are refused")
    func refused() throws {
        let z = try handler()
        defer { z.socket.close() }
        let stranger = CurveKeyPair.random().publicKey
        let (r, rejection) = z.answer(request(mechanism: "CURVE", key: stranger))
        #expect(r[2] == Array("400".utf8))
        #expect(rejection?.keyFingerprint == KeyFingerprint.of(stranger))
        // The server key is not a client key.
        #expect(z.answer(request(mechanism: "CURVE", key: keys.server.publicKey)).reply[2] == Array("400".utf8))
        #expect(z.answer(request(mechanism: "NULL", key: nil)).reply[2] == Array("400".utf8))
        #expect(z.answer(request(mechanism: "PLAIN", key: [1, 2])).reply[2] == Array("400".utf8))
        #expect(z.answer([[1]]).reply[2] == Array("500".utf8))
    }
}

@Suite("Keys")
struct KeyTests {
    @Test("the same secret gives the same key pairs; another secret gives others")
    func derivation() throws {
        let s = ClusterSecret.generate()
        let again = try ClusterSecret(text: s.text)
        #expect(again == s)
        #expect(again.keys == s.keys)
        let k = s.keys
        #expect(Set([k.server.publicKey, k.peer.publicKey, k.client.publicKey]).count == 3)
        #expect(ClusterSecret.generate().keys.server != k.server)
        #expect(k.fingerprint.count == 16)
    }

    @Test("derived public keys match libzmq's own derivation")
    func matchesLibzmq() {
        let pair = ClusterSecret.generate().keys.peer
        var pub = [CChar](repeating: 0, count: 41)
        let secretZ85 = Z85.encode(pair.secretKey)
        #expect(zmq_curve_public(&pub, secretZ85) == 0)
        #expect(String(decoding: pub.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == pair.publicZ85)
    }

    @Test("bad key text is refused with a reason", arguments: ["", "meshkey1.", "meshkey1.abc", "hello", "meshkey1.!!!!"])
    func badText(text: String) {
        #expect(throws: KeyError.self) { try ClusterSecret(text: text) }
    }

    @Test("surrounding whitespace is ignored")
    func whitespace() throws {
        let s = ClusterSecret.generate()
        #expect(try ClusterSecret(text: "  \(s.text)\n") == s)
    }
}

@Suite("Durations")
struct DurationTests {
    @Test("milliseconds round up so short timeouts do not spin", arguments: [
        (Duration.zero, Int64(0)), (.nanoseconds(1), 1), (.milliseconds(5), 5), (.microseconds(5500), 6), (.seconds(2), 2000),
    ])
    func roundUp(d: Duration, ms: Int64) {
        #expect(d.millisecondsRoundedUp == ms)
    }
}
