import CZeroMQ
import Glibc
import MeshTestSupport
import Testing

@testable import MeshTransport

@Suite("Transport round trips")
struct TransportRoundTripTests {
    @Test("plaintext request and reply through the I/O thread")
    func plaintextRoundTrip() async throws {
        let server = try EchoServer(security: .plaintext)
        defer { server.shutdown() }
        let reply = try await onThread {
            let client = try RequestClient(endpoint: server.endpoint, security: .plaintext, settings: .testing)
            return try client.request([[1, 2, 3], [4]], timeout: .seconds(5))
        }
        #expect(reply.frames == [[1, 2, 3], [4]])
    }

    @Test("CURVE with the mesh's client key: reply arrives, ZAP labels the connection 'client'")
    func curveRoundTrip() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        defer { server.shutdown() }
        let reply = try await onThread {
            let client = try RequestClient(
                endpoint: server.endpoint, security: TransportSecurity.curve(meshKeys).client(as: .client),
                settings: .testing)
            return try client.request([Array("hello".utf8)], timeout: .seconds(5))
        }
        #expect(reply.frames == [Array("hello".utf8)])
        #expect(server.seen.value.first?.userID == "client")
    }

    @Test("a peer DEALER gets its reply back on the peer connection, labelled 'peer'")
    func peerRoundTrip() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        defer { server.shutdown() }
        let other = try EchoServer(security: .curve(meshKeys))
        defer { other.shutdown() }
        let endpoint = server.endpoint
        try other.transport.run { loop in try loop.connect("a", endpoint: endpoint) }
        #expect(await eventually { other.events.value.contains { if case .peer("a", _, .established) = $0 { true } else { false } } })
        let outcome = try other.transport.run { loop in loop.send(to: "a", [[9, 9]]) }
        #expect(outcome == .sent)
        #expect(await eventually { other.seen.value.contains { $0.source == .peer("a") && $0.frames == [[9, 9]] } })
        #expect(server.seen.value.first?.userID == "peer")
    }

    @Test("with a source address, a peer connection comes from that address (so a firewall can tell agents apart)")
    func sourceAddress() async throws {
        // A bare TCP listener: it sees the connection's source before any ZMTP handshake.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0)
        try #require(listen(fd, 4) == 0)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: addr.sin_port)

        var settings = TransportSettings.testing
        settings.sourceAddress = "127.0.0.23"
        let t = try Transport(settings: settings, security: .plaintext)
        defer { t.shutdown() }
        try t.run { loop in try loop.connect("p", endpoint: "tcp://127.0.0.1:\(port)") }
        let peer = try await onThread { () -> String in
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 10_000) == 1 else { return "no connection" }
            var from = sockaddr_in()
            var n = socklen_t(MemoryLayout<sockaddr_in>.size)
            let c = withUnsafeMutablePointer(to: &from) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &n) } }
            defer { close(c) }
            return String(cString: inet_ntoa(from.sin_addr))
        }
        #expect(peer == "127.0.0.23")
        #expect(TransportLoop.endpoint("tcp://10.0.0.1:7000", from: nil) == "tcp://10.0.0.1:7000")
        #expect(TransportLoop.endpoint("tcp://127.0.0.12:7000", from: "127.0.0.11") == "tcp://127.0.0.11:0;127.0.0.12:7000")
    }

    @Test("sending to a peer that is not connected is refused at once, not queued")
    func sendWithoutConnectionWouldBlock() async throws {
        let t = try Transport(settings: .testing, security: .curve(meshKeys))
        defer { t.shutdown() }
        let outcome = try t.run { loop in
            try loop.connect("nobody", endpoint: "tcp://127.0.0.1:1")
            return loop.send(to: "nobody", [[1]])
        }
        #expect(outcome == .wouldBlock)
    }

    @Test("work from many threads all runs on the I/O thread")
    func executeFromManyThreads() async throws {
        let t = try Transport(settings: .testing, security: .plaintext)
        defer { t.shutdown() }
        let count = Box(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await onThread {
                        for _ in 0..<500 { t.execute { _ in count.update { $0 += 1 } } }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await eventually { count.value == 4000 })
    }

    @Test("timers fire in deadline order and a cancelled one never fires")
    func timers() async throws {
        let t = try Transport(settings: .testing, security: .plaintext)
        defer { t.shutdown() }
        let fired = Box<[Int]>([])
        try t.run { loop in
            loop.schedule(after: .milliseconds(60)) { _ in fired.update { $0.append(3) } }
            loop.schedule(after: .milliseconds(10)) { _ in fired.update { $0.append(1) } }
            let x = loop.schedule(after: .milliseconds(30)) { _ in fired.update { $0.append(99) } }
            loop.schedule(after: .milliseconds(20)) { _ in fired.update { $0.append(2) } }
            loop.cancel(x)
        }
        #expect(await eventually { fired.value.count == 3 })
        try await Task.sleep(for: .milliseconds(50))
        #expect(fired.value == [1, 2, 3])
    }
}

@Suite("Transport security")
struct TransportSecurityTests {
    @Test("a client holding another mesh's key gets a handshake error quickly, not a hang")
    func wrongServerKey() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        defer { server.shutdown() }
        // Timed on the worker thread: the await itself may wait for a busy cooperative pool.
        let (error, elapsed) = try await onThread { () -> (RequestError?, Duration) in
            let started = ContinuousClock.now
            let e = try requestFailure(
                endpoint: server.endpoint, security: TransportSecurity.curve(otherMeshKeys).client(as: .client),
                settings: .testing, timeout: .seconds(30))
            return (e, ContinuousClock.now - started)
        }
        guard case .handshakeFailed = error else {
            Issue.record("expected a handshake failure, got \(String(describing: error))")
            return
        }
        // A handshake error, long before the 30 s the client was willing to wait.
        #expect(elapsed < .seconds(15))
        #expect(server.seen.value.isEmpty)
    }

    @Test("a client key that is not the mesh's is refused by ZAP, and the server reports it")
    func unknownClientKey() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        defer { server.shutdown() }
        let stranger = CurveKeyPair.random()
        let error = try await onThread { () -> RequestError? in
            try requestFailure(
                endpoint: server.endpoint,
                security: .curve(serverPublicKey: meshKeys.server.publicKey, client: stranger),
                settings: .testing, timeout: .seconds(10))
        }
        #expect(error == .handshakeFailed(.authentication(status: 400)))
        #expect(server.seen.value.isEmpty)
        let fingerprint = KeyFingerprint.of(stranger.publicKey)
        #expect(await eventually {
            server.events.value.contains {
                if case .rejected(_, "CURVE", fingerprint) = $0 { true } else { false }
            }
        })
    }

    @Test("a plaintext client cannot talk to a CURVE server")
    func plaintextClientRefused() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        defer { server.shutdown() }
        let error = try await onThread { () -> RequestError? in
            try requestFailure(endpoint: server.endpoint, security: .plaintext, settings: .testing, timeout: .seconds(3))
        }
        #expect(error != nil)
        #expect(server.seen.value.isEmpty)
    }

    @Test("nothing listening: the client times out and says the connection was refused")
    func refused() async throws {
        let closed = try ReservedPort()
        let endpoint = "tcp://\(closed.address)"
        let error = try await onThread { () -> RequestError? in
            try requestFailure(endpoint: endpoint, security: .plaintext, settings: .testing, timeout: .seconds(3))
        }
        #expect(error == .timedOut(.refused))
    }
}

@Suite("Transport limits and lifecycle")
struct TransportLimitTests {
    @Test("an oversized frame is dropped and the server keeps answering")
    func oversizeDropped() async throws {
        var settings = TransportSettings.testing
        settings.maxMessageSize = 1024
        let server = try EchoServer(security: .plaintext, settings: settings)
        defer { server.shutdown() }
        let endpoint = server.endpoint
        let big = [UInt8](repeating: 7, count: 64 * 1024)
        let bigReply = try await onThread { () -> ReceivedMessage? in
            let client = try RequestClient(endpoint: endpoint, security: .plaintext, settings: .testing)
            return try? client.request([big], timeout: .milliseconds(500))
        }
        #expect(bigReply == nil)
        let small = try await onThread {
            let client = try RequestClient(endpoint: endpoint, security: .plaintext, settings: .testing)
            return try client.request([[1, 2]], timeout: .seconds(5))
        }
        #expect(small.frames == [[1, 2]])
        #expect(!server.seen.value.contains { $0.frames.first?.count == big.count })
    }

    @Test("a message with too many frames is cut to the limit and marked truncated")
    func tooManyFrames() async throws {
        var settings = TransportSettings.testing
        settings.maxFrames = 4
        let server = try EchoServer(security: .plaintext, settings: settings)
        defer { server.shutdown() }
        let endpoint = server.endpoint
        _ = try await onThread {
            let client = try RequestClient(endpoint: endpoint, security: .plaintext, settings: .testing)
            return try client.request((0..<100).map { [UInt8($0)] }, timeout: .seconds(5))
        }
        let m = try #require(server.seen.value.first)
        #expect(m.truncated)
        #expect(m.frames.count <= 5)
    }

    @Test("a peer whose server shuts down is reported lost at once")
    func lostPeer() async throws {
        let server = try EchoServer(security: .curve(meshKeys))
        // Heartbeats far slower than `eventually`'s 10 s: only the closed connection itself can
        // report the loss in time (a bound on seconds would be a timed assertion on a shared machine).
        var slow = TransportSettings.testing
        slow.heartbeatInterval = .seconds(60)
        slow.heartbeatTimeout = .seconds(120)
        let watcher = try EchoServer(security: .curve(meshKeys), settings: slow)
        defer { watcher.shutdown() }
        let endpoint = server.endpoint
        try watcher.transport.run { loop in try loop.connect("s", endpoint: endpoint) }
        #expect(await eventually { watcher.events.value.contains { if case .peer("s", _, .established) = $0 { true } else { false } } })
        server.shutdown()
        #expect(await eventually { watcher.events.value.contains { if case .peer("s", _, .lost) = $0 { true } else { false } } })
    }

    @Test("shutdown joins the I/O thread and libzmq's threads")
    func shutdownLeavesNoThreads() async throws {
        var settings = TransportSettings.testing
        let tag = Int32.random(in: 100...999)
        settings.threadName = "mt-\(tag)"
        settings.zmqThreadNamePrefix = tag
        let t = try Transport(settings: settings, security: .curve(meshKeys))
        _ = try t.run { loop in try loop.listen("tcp://127.0.0.1:*") }
        let mine: @Sendable () -> [String] = { currentThreadNames().filter { $0 == "mt-\(tag)" || $0.hasPrefix("\(tag)/") } }
        // (libzmq's threads name themselves once they run.)
        #expect(await eventually(timeout: .seconds(10)) { mine().count >= 3 }, "threads: \(currentThreadNames())")
        let started = ContinuousClock.now
        t.shutdown()
        #expect(ContinuousClock.now - started < .seconds(10), "shutdown hangs")
        // pthread_join returns once the kernel clears the thread's tid, a moment before its task
        // leaves /proc; a thread that is really still running would stay.
        #expect(await eventually(timeout: .seconds(10)) { mine().isEmpty }, "\(mine())")
        #expect(!t.isRunning)
        t.shutdown()  // idempotent
        #expect(throws: TransportError.self) { try t.run { _ in 1 } }
    }
}
