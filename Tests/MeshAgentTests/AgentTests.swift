import Foundation
import MeshCore
import MeshFuzzing
import MeshTestSupport
import MeshTransport
import MeshWire
import Testing

@testable import MeshAgent

@Suite("Agent answers")
struct AgentAnswerTests {
    @Test("ping over TCP and over the local socket names the agent and its mesh")
    func ping() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        for address in [a.tcp, a.local] {
            let (node, rtt) = try await onThread {
                let c = try MeshClient(address: address, secret: a.secret)
                defer { c.close() }
                return try c.ping()
            }
            #expect(node.name == "alpha")
            #expect(node.meshFingerprint == a.secret.keys.fingerprint)
            #expect(node.protocolVersion == Wire.protocolVersion)
            #expect(node.advertise == a.tcp.description)
            #expect(rtt > .zero)
        }
    }

    @Test("the local socket is private to its owner")
    func socketMode() throws {
        let a = try RunningAgent()
        defer { a.stop() }
        var st = stat()
        #expect(stat(a.agent.configuration.dataDirectory.socketPath, &st) == 0)
        #expect(st.st_mode & 0o077 == 0)
    }

    @Test("bad input gets an error reply and the agent keeps answering", arguments: [
        ("garbage", [Array("not protobuf at all".utf8)], WireErrorReply.Code.malformed),
        ("two frames", [Wire.encode(.ping(WirePing()), requestID: 1), [1]], .malformed),
        ("empty frame", [[]], .malformed),
        ("a reply sent as a request", [Wire.encode(.pong(WirePong()), requestID: 3)], .unsupported),
    ])
    func badInput(what: String, frames: [[UInt8]], code: WireErrorReply.Code) async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let reply = try await onThread {
            let c = try a.rawClient()
            defer { c.close() }
            return try rawRequest(c, frames)
        }
        #expect(reply.error.code == code, "\(what)")
        #expect(!reply.error.message.isEmpty)
        let node = try await a.ping()
        #expect(node.name == "a")
    }

    @Test("an oversized message is dropped (its connection closed) and the agent keeps answering")
    func oversized() async throws {
        let a = try RunningAgent(maxMessageSize: 4096)
        defer { a.stop() }
        let big = Wire.encode(.ping(WirePing.with { $0.payload = Data(repeating: 1, count: 64 * 1024) }), requestID: 1)
        let answered = try await onThread { () -> Bool in
            let c = try a.rawClient()
            defer { c.close() }
            return (try? c.request([big], timeout: .milliseconds(500))) != nil
        }
        #expect(!answered)
        #expect(try await a.ping().name == "a")
    }

    @Test("a peer speaking another protocol version is told which versions this agent speaks")
    func incompatibleVersion() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        var envelope = Wire.envelope(.ping(WirePing()), requestID: 42)
        envelope.protocolVersion = 99
        let e = envelope
        let reply = try await onThread {
            let c = try a.rawClient()
            defer { c.close() }
            return try rawRequest(c, [Wire.encode(e)])
        }
        #expect(reply.requestID == 42)
        #expect(reply.error.code == .incompatibleVersion)
        #expect(reply.error.newestSupportedVersion == Wire.protocolVersion)
        #expect(reply.error.message.contains("99"))
    }

    @Test("a flood of garbage does not stop the agent")
    func garbageFlood() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        try await onThread {
            let c = try a.rawClient()
            defer { c.close() }
            try c.waitConnected(timeout: .seconds(5))
            for i in 0..<2000 {
                // The client's own high-water mark (1000) refuses sends when the queue is full.
                while (try? c.send([[UInt8(i & 0xff), 0xff, 0xff]])) == nil { usleep(500) }
            }
        }
        let node = try await a.ping()
        #expect(node.name == "a")
    }

    @Test("a client with another mesh's key is refused with exit code 69")
    func wrongKey() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let error = try await onThread { () -> ClientError? in
            let c = try MeshClient(address: a.tcp, secret: ClusterSecret.generate())
            defer { c.close() }
            return clientFailure { () throws(ClientError) in _ = try c.ping(timeout: .seconds(10)) }
        }
        guard case .keyRejected = error else {
            Issue.record("expected keyRejected, got \(String(describing: error))")
            return
        }
        #expect(error?.exitCode == ExitStatus.unreachable)
    }
}

@Suite("Agent to agent")
struct AgentToAgentTests {
    @Test("an agent pings another agent of its mesh on a client's request")
    func pingPeer() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        let b = try RunningAgent(name: "beta", secretFrom: a)
        defer { b.stop() }
        let result = try await onThread {
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            return try c.pingPeer(b.tcp)
        }
        #expect(result.via.name == "alpha")
        #expect(result.target.name == "beta")
        #expect(result.roundTripNanos > 0)
    }

    @Test("an agent of another mesh is reported as a handshake failure, quickly")
    func pingPeerOtherMesh() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        let stranger = try RunningAgent(name: "stranger")
        defer { stranger.stop() }
        let (error, elapsed) = try await onThread { () -> (ClientError?, Duration) in
            let started = ContinuousClock.now
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            let e = clientFailure { () throws(ClientError) in _ = try c.pingPeer(stranger.tcp, timeout: .seconds(30)) }
            return (e, ContinuousClock.now - started)
        }
        guard case .remote(_, .handshakeFailed, let message) = error else {
            Issue.record("expected a handshake failure, got \(String(describing: error))")
            return
        }
        #expect(message.contains("cluster key"))
        #expect(elapsed < .seconds(15))
        #expect(error?.exitCode == ExitStatus.unreachable)
    }

    @Test("nothing listening: the agent answers with a timeout that says the connection was refused")
    func pingPeerNobody() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let closed = try ReservedPort()
        let error = try await onThread { () -> ClientError? in
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            return clientFailure { () throws(ClientError) in _ = try c.pingPeer(.tcp(host: "127.0.0.1", port: closed.port), timeout: .seconds(3)) }
        }
        guard case .remote(_, .timeout, let message) = error else {
            Issue.record("expected a timeout, got \(String(describing: error))")
            return
        }
        #expect(message.contains("refused"))
    }

    @Test("a bad address from a client is a bad request, not a crash")
    func pingPeerBadAddress() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        var pp = WirePingPeer()
        pp.endpoint = "not an address!"
        let request = pp
        let reply = try await onThread {
            let c = try a.rawClient()
            defer { c.close() }
            return try rawRequest(c, [Wire.encode(.pingPeer(request), requestID: 9)])
        }
        #expect(reply.error.code == .badRequest)
    }
}

@Suite("Agent start-up errors")
struct AgentStartupTests {
    func expectAgentError(_ body: () throws -> Void, matching: (AgentError) -> Bool) {
        do {
            try body()
            Issue.record("expected an AgentError")
        } catch let e as AgentError {
            #expect(matching(e), "\(e)")
            #expect(!e.description.isEmpty)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("no key: the error says to run mesh init")
    func noKey() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        expectAgentError({
            _ = try Agent.start(AgentConfiguration(dataDirectory: DataDirectory(path: t.sub("d")), listen: .tcp(host: "127.0.0.1", port: 0)))
        }, matching: { if case .noClusterKey = $0 { $0.description.contains("mesh init") } else { false } })
    }

    @Test("a key others can read is refused")
    func keyPermissions() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        _ = try MeshSetup.initialise(dir)
        chmod(dir.keyFile, 0o644)
        expectAgentError({ _ = try dir.readKey() }, matching: { if case .keyPermissions = $0 { true } else { false } })
    }

    @Test("a key file with garbage in it is refused")
    func garbageKey() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        try dir.create()
        _ = FileManager.default.createFile(atPath: dir.keyFile, contents: Data("hello".utf8), attributes: [.posixPermissions: 0o600])
        expectAgentError({ _ = try dir.readKey() }, matching: { if case .badClusterKey = $0 { true } else { false } })
    }

    @Test("init never replaces a key")
    func initTwice() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        let first = try MeshSetup.initialise(dir)
        expectAgentError({ _ = try MeshSetup.initialise(dir) }, matching: { $0 == .alreadyInitialised(dir.path) })
        #expect(try dir.readKey().keys.fingerprint == first.fingerprint)
    }

    @Test("a data directory that cannot be created is a clear error")
    func unusableDataDirectory() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        _ = FileManager.default.createFile(atPath: t.sub("file"), contents: Data())
        expectAgentError({ _ = try MeshSetup.initialise(DataDirectory(path: t.sub("file/d"))) },
                         matching: { if case .dataDirectory = $0 { true } else { false } })
        expectAgentError({ _ = try MeshSetup.initialise(DataDirectory(path: t.sub("file"))) },
                         matching: { if case .dataDirectory(_, let why) = $0 { why.contains("not a directory") } else { false } })
    }

    @Test("two agents on one data directory: the second is refused")
    func secondAgentSameDirectory() throws {
        let a = try RunningAgent()
        defer { a.stop() }
        expectAgentError({
            _ = try Agent.start(AgentConfiguration(dataDirectory: a.agent.configuration.dataDirectory, listen: .tcp(host: "127.0.0.1", port: 0)))
        }, matching: { if case .alreadyRunning(_, let pid) = $0 { pid == getpid() } else { false } })
    }

    @Test("a port in use: the error says so and nothing is left locked")
    func portInUse() throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        _ = try MeshSetup.initialise(dir)
        expectAgentError({
            _ = try Agent.start(AgentConfiguration(dataDirectory: dir, listen: a.tcp))
        }, matching: { $0.description.contains("already in use") })
        // The failed start released the directory: a retry on a free port works.
        let b = try Agent.start(AgentConfiguration(dataDirectory: dir, listen: .tcp(host: "127.0.0.1", port: 0)))
        b.shutdown()
    }

    @Test("a data directory too deep for an ipc socket path is refused with advice")
    func socketPathTooLong() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub(String(repeating: "x", count: 110)))
        _ = try MeshSetup.initialise(dir)
        expectAgentError({
            _ = try Agent.start(AgentConfiguration(dataDirectory: dir, listen: .tcp(host: "127.0.0.1", port: 0)))
        }, matching: { if case .socketPathTooLong = $0 { true } else { false } })
    }

    @Test("shutdown removes the endpoint file and the socket")
    func cleanShutdown() throws {
        let a = try RunningAgent()
        let dir = a.agent.configuration.dataDirectory
        #expect(FileManager.default.fileExists(atPath: dir.endpointFile))
        a.agent.shutdown()
        #expect(!FileManager.default.fileExists(atPath: dir.endpointFile))
        #expect(!FileManager.default.fileExists(atPath: dir.socketPath))
        a.directory.remove()
    }
}

@Suite("Addresses")
struct AddressTests {
    @Test("accepted forms", arguments: [
        ("127.0.0.1:7771", AgentAddress.tcp(host: "127.0.0.1", port: 7771)),
        ("tcp://10.1.2.3:80", .tcp(host: "10.1.2.3", port: 80)),
        ("gpu-box-3", .tcp(host: "gpu-box-3", port: 7770)),
        (":9000", .tcp(host: "0.0.0.0", port: 9000)),
        ("9000", .tcp(host: "0.0.0.0", port: 9000)),
        ("*:0", .tcp(host: "0.0.0.0", port: 0)),
        ("ipc:///tmp/x.sock", .ipc(path: "/tmp/x.sock")),
    ])
    func parse(text: String, expected: AgentAddress) throws {
        #expect(try AgentAddress(parsing: text) == expected)
    }

    @Test("refused forms, each with a reason and the usage exit code", arguments: [
        "", "host:port", "host:70000", "[::1]:7770", "a b:1", "ipc://", "::1",
    ])
    func refuse(text: String) {
        do {
            _ = try AgentAddress(parsing: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.exitCode == ExitStatus.usage)
            #expect(error.description.contains("HOST:PORT"))
        }
    }

    @Test("port 0 becomes libzmq's wildcard")
    func wildcard() {
        #expect(AgentAddress.tcp(host: "127.0.0.1", port: 0).endpoint == "tcp://127.0.0.1:*")
    }
}

@Suite("Child processes")
struct ChildProcessTests {
    @Test("exit status and signals are reported, and waiting does not poll")
    func exitAndSignal() async throws {
        let t = try await onThread { () -> (ChildProcess.Termination?, ChildProcess.Termination?) in
            let ok = try ChildProcess.spawn("/bin/sh", ["-c", "exit 3"])
            let sleeper = try ChildProcess.spawn("/bin/sleep", ["30"])
            let a = ok.wait(timeout: .seconds(5))
            #expect(sleeper.wait(timeout: .milliseconds(50)) == nil)
            sleeper.signal(SIGTERM)
            return (a, sleeper.wait(timeout: .seconds(5)))
        }
        #expect(t.0 == .exited(3))
        #expect(t.1 == .signalled(SIGTERM))
    }

    @Test("a missing executable is an error, not a crash")
    func missing() {
        #expect(throws: SpawnError.self) { try ChildProcess.spawn("/nonexistent/mesh", []) }
    }
}

@Suite("Agent membership")
struct AgentMembershipTests {
    @Test("a new agent is the founder of its own mesh; a second one joins it and both see two alive")
    func join() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        let first = try #require(a.agent.status())
        #expect(first.join.state == .founder)
        #expect(first.members.map(\.record.meta.name) == ["alpha"])

        let b = try RunningAgent(name: "beta", secretFrom: a, seeds: [a.tcp])
        defer { b.stop() }
        let joined = await eventually(timeout: .seconds(10)) {
            b.agent.status()?.join.state == .joined && a.agent.status()?.members.count == 2
        }
        #expect(joined)
        #expect(a.agent.status()?.members.allSatisfy { $0.record.state == .alive } == true)
        #expect(b.agent.status()?.members.first { $0.record.meta.name == "alpha" }?.record.meta.address == a.tcp.description)
    }

    @Test("gossip from a client key is refused: only agents gossip")
    func clientGossipRefused() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let packet = Membership.Packet(from: NodeID(99), fromAddress: "127.0.0.1:1", message: .gossip, updates: [
            .dead(a.agent.nodeID, incarnation: 100, from: NodeID(99)),
        ])
        let reply = try await onThread {
            let c = try a.rawClient()
            defer { c.close() }
            return try rawRequest(c, [Wire.encode(packet, requestID: 5)])
        }
        #expect(reply.error.code == .badRequest)
        #expect(a.agent.status()?.members.first?.record.incarnation == 1)
    }

    @Test("malformed gossip from a peer is dropped and the agent keeps going")
    func malformedGossip() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        var bad = Wire.wire(Membership.Packet(from: NodeID(5), fromAddress: "x:1", message: .gossip))
        bad.from = 0
        let w = bad
        try await onThread {
            let c = try RequestClient(
                endpoint: a.tcp.endpoint, security: TransportSecurity.curve(a.secret.keys).client(as: .peer))
            defer { c.close() }
            try c.waitConnected(timeout: .seconds(5))
            try c.send([Wire.encode(.gossip(w))])
        }
        #expect(try await a.ping().name == "a")
        #expect(a.agent.status()?.members.count == 1)
    }
}

@Suite("Agent coordinator")
struct AgentCoordinatorTests {
    @Test("a new mesh's first agent coordinates alone, and says it survives no voter failure")
    func founder() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        #expect(await eventually(timeout: .seconds(5)) { a.agent.status()?.coordinator.leader == a.agent.nodeID.rawValue })
        let c = try #require(a.agent.status()?.coordinator)
        #expect(c.voters == [a.agent.nodeID.rawValue])
        #expect(c.faultTolerance == 0)
        #expect(c.fromLeader)
    }

    @Test("writes are applied through the log; a retried request applies once and gets the same answer")
    func writes() async throws {
        let a = try RunningAgent(name: "alpha")
        defer { a.stop() }
        #expect(await eventually(timeout: .seconds(5)) { a.agent.status()?.nodes.contains { $0.name == "alpha" } == true })
        let (done, index) = try await onThread {
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            return try c.write(.cordon(name: "alpha", reason: "testing"))
        }
        #expect(done == .done("alpha cordoned: no new jobs will start there"))
        #expect(a.agent.status()?.nodes.first { $0.name == "alpha" }?.cordoned == true)
        // The same (client, sequence) sent twice: one application, one answer.
        let request = ClusterState.Request(client: .init(77), sequence: 1, command: .uncordon(name: "alpha"))
        var w = WireWriteRequest()
        w.request = Wire.wire(request)
        let write = w
        let (first, second) = try await onThread { () -> (WireEnvelope, WireEnvelope) in
            let c = try a.rawClient(a.local)
            defer { c.close() }
            return (try rawRequest(c, [Wire.encode(.writeRequest(write), requestID: 1)]),
                    try rawRequest(c, [Wire.encode(.writeRequest(write), requestID: 2)]))
        }
        #expect(first.writeReply.outcome == second.writeReply.outcome)
        #expect(first.writeReply.index > index && second.writeReply.index > first.writeReply.index)
        let rejected = try await onThread {
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            return try c.write(.cordon(name: "nobody", reason: "")).outcome
        }
        #expect(rejected == .rejected("no node named 'nobody' in the mesh"))
    }

    @Test("snapshots: the log is compacted on disk, a newcomer installs the snapshot, and a restart recovers from it")
    func snapshots() async throws {
        let a = try RunningAgent(name: "alpha", snapshotEvery: 8)
        #expect(await eventually(timeout: .seconds(5)) { a.agent.status()?.coordinator.leader != 0 })
        try await onThread {
            let c = try MeshClient(address: a.local, secret: a.secret)
            defer { c.close() }
            for i in 0..<30 { _ = try c.write(.setSetting(key: "k\(i)", value: "v\(i)")) }
        }
        // A newcomer, far behind a compacted log, gets the snapshot and then the rest.
        let b = try RunningAgent(name: "beta", secretFrom: a, seeds: [a.tcp], snapshotEvery: 8)
        defer { b.stop() }
        #expect(await eventually(timeout: .seconds(15)) {
            guard let st = b.agent.status() else { return false }
            return st.coordinator.appliedIndex >= 30 && st.coordinator.leader != 0
        })
        let dbEntries = try await onThread { () -> Int in
            let store = try RaftStore(path: a.agent.configuration.dataDirectory.stateDatabase)
            return try store.load()!.entries.count
        }
        #expect(dbEntries < 16)  // compacted: at most two snapshot intervals of entries left
        // Restart alpha from its snapshot and log: state intact.
        let applied = a.agent.status()!.coordinator.appliedIndex
        a.agent.shutdown()
        let again = try RunningAgent(name: "alpha", snapshotEvery: 8, reuse: a.directory)
        defer { again.stop() }
        #expect(await eventually(timeout: .seconds(10)) {
            (again.agent.status()?.coordinator.appliedIndex ?? 0) >= applied
        })
        let settings = try await onThread { () -> WireWriteReply in
            let c = try MeshClient(address: again.local, secret: again.secret)
            defer { c.close() }
            let (outcome, index) = try c.write(.setSetting(key: "after", value: "restart"))
            var r = WireWriteReply()
            r.outcome = Wire.wire(outcome)
            r.index = index
            return r
        }
        #expect(settings.outcome.done && settings.index > applied)
    }

    @Test("a damaged state database stops the agent with a clear error and is left untouched")
    func damagedStore() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        _ = try MeshSetup.initialise(dir)
        let garbage = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try garbage.write(to: URL(fileURLWithPath: dir.stateDatabase))
        do {
            _ = try Agent.start(AgentConfiguration(dataDirectory: dir, listen: .tcp(host: "127.0.0.1", port: 0)))
            Issue.record("started from a damaged store")
        } catch {
            guard case .store = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(error.description.contains(dir.stateDatabase))
            #expect(error.description.contains("move it away"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.stateDatabase)) == garbage)
        // And the directory is free again.
        #expect(dir.lockHolder() == nil)
    }
}

@Suite("Agent under random input")
struct AgentFuzzTests {
    @Test("the inputs that stopped 0.3 and thousands of mutated envelopes, through the agent's own request handling, as client and as peer: it keeps answering")
    func mutatedEnvelopes() async throws {
        let a = try RunningAgent()
        defer { a.stop() }
        let seeds = FuzzTargets.seedEnvelopes() + FuzzTargets.poisonEnvelopes()
        for role in ["client", "peer"] {
            for e in FuzzTargets.poisonEnvelopes() { a.agent.deliver([e], userID: role) }
        }
        var rng = SeededRandom(seed: 2026)
        for i in 0..<4000 {
            var m = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 3)) where !m.isEmpty {
                let at = Int(rng.next() % UInt64(m.count))
                if rng.next() % 2 == 0 { m[at] ^= UInt8(truncatingIfNeeded: rng.next() | 1) } else { m.insert(UInt8(truncatingIfNeeded: rng.next()), at: at) }
            }
            a.agent.deliver([m], userID: i % 3 == 0 ? "client" : "peer")
        }
        #expect(a.agent.isRunning)
        let node = try await a.ping()
        #expect(node.name == "a")
        // Still the only voter and coordinator, in a term no poison raised.
        let status = try #require(a.agent.status())
        #expect(status.coordinator.role == "leader")
        #expect(status.coordinator.term < 1000)
    }
}

@Suite("Agent files")
struct AgentFileTests {
    @Test("a data directory others could read is made 0700; state.db and its -wal and -shm are 0600")
    func modes() throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let dir = DataDirectory(path: t.sub("d"))
        _ = try MeshSetup.initialise(dir)
        chmod(dir.path, 0o755)
        let warning = try dir.create()
        #expect(warning?.contains("now 0700") == true)
        let a = try RunningAgent(reuse: t)
        defer { a.agent.shutdown() }
        var st = stat()
        #expect(stat(dir.path, &st) == 0 && st.st_mode & 0o777 == 0o700)
        for file in [dir.stateDatabase, dir.stateDatabase + "-wal", dir.stateDatabase + "-shm"] {
            #expect(stat(file, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(file): \(String(st.st_mode & 0o777, radix: 8))")
        }
    }

    @Test("a member's directory without its state (state.db missing or empty) is refused; --rejoin-as-new starts it over", arguments: [true, false])
    func lostState(emptyFile: Bool) throws {
        let t = try TemporaryDirectory("ma")
        defer { t.remove() }
        let first = try RunningAgent(reuse: nil)
        let dirPath = first.agent.configuration.dataDirectory
        let oldID = first.agent.nodeID
        first.agent.shutdown()
        unlink(dirPath.stateDatabase + "-wal")
        unlink(dirPath.stateDatabase + "-shm")
        if emptyFile { truncate(dirPath.stateDatabase, 0) } else { unlink(dirPath.stateDatabase) }
        let config = AgentConfiguration(dataDirectory: dirPath, listen: .tcp(host: "127.0.0.1", port: 0))
        let refused: Result<Agent, AgentError> = Result { () throws(AgentError) in try Agent.start(config) }
        switch refused {
        case .success(let agent):
            agent.shutdown()
            Issue.record("started from a directory that lost its state")
        case .failure(let e):
            #expect(e == .lostState(dirPath.path))
            #expect(e.description.contains("--rejoin-as-new"))
        }
        var again = config
        again.rejoinAsNew = true
        let fresh = try Agent.start(again)
        #expect(fresh.nodeID != oldID)
        fresh.shutdown()
        first.directory.remove()
    }
}
