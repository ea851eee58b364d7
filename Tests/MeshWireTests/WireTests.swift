import MeshCore
import SwiftProtobuf
import Testing

@testable import MeshWire

@Suite("Wire encoding")
struct WireTests {
    @Test("every body survives encode and decode with its request id")
    func roundTrip() throws {
        var node = WireNodeInfo()
        node.name = "alpha"
        node.version = MeshVersion.string
        node.meshFingerprint = "0123456789abcdef"
        var pong = WirePong()
        pong.responder = node
        var pp = WirePingPeer()
        pp.endpoint = "127.0.0.1:7770"
        pp.timeoutMs = 500
        var result = WirePingPeerResult()
        result.via = node
        result.target = node
        result.roundTripNanos = 12345
        let bodies: [WireEnvelope.OneOf_Body] = [
            .ping(WirePing()), .pong(pong), .pingPeer(pp), .pingPeerResult(result),
            .error(Wire.errorReply(for: .malformed("x")).error),
        ]
        for (i, body) in bodies.enumerated() {
            let bytes = Wire.encode(body, requestID: UInt64(i + 1))
            let back = try Wire.decode(bytes)
            #expect(back.body == body)
            #expect(back.requestID == UInt64(i + 1))
            #expect(back.protocolVersion == Wire.protocolVersion)
        }
    }

    @Test("bytes that are not an envelope are malformed, never a crash", arguments: [
        [UInt8](), [0xff], [0x08], Array("hello world".utf8), [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    ])
    func garbage(bytes: [UInt8]) {
        #expect(throws: WireError.self) { try Wire.decode(bytes) }
    }

    @Test("random bytes either decode or throw WireError")
    func randomBytes() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<64, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            do {
                _ = try Wire.decode(bytes)
            } catch {
                // Typed throws: every failure is a WireError.
                #expect(error.description.isEmpty == false)
            }
        }
    }

    @Test("a newer peer's version is refused with both ranges and its request id")
    func incompatibleVersion() throws {
        var e = Wire.envelope(.ping(WirePing()), requestID: 77)
        e.protocolVersion = 99
        let bytes = Wire.encode(e)
        #expect(throws: WireError.incompatibleVersion(peer: 99, requestID: 77)) { try Wire.decode(bytes) }
        let reply = Wire.errorReply(for: .incompatibleVersion(peer: 99, requestID: 77))
        #expect(reply.requestID == 77)
        #expect(reply.error.code == .incompatibleVersion)
        #expect(reply.error.oldestSupportedVersion == Wire.oldestSupportedVersion)
        #expect(reply.error.newestSupportedVersion == Wire.protocolVersion)
        #expect(reply.error.message.contains("99"))
    }

    @Test("an envelope without a version or without a body is malformed")
    func missingParts() {
        var noVersion = Wire.envelope(.ping(WirePing()))
        noVersion.protocolVersion = 0
        #expect(throws: WireError.self) { try Wire.decode(Wire.encode(noVersion)) }
        var noBody = WireEnvelope()
        noBody.protocolVersion = Wire.protocolVersion
        #expect(throws: WireError.malformed("empty message")) { try Wire.decode(Wire.encode(noBody)) }
    }

    @Test("fields a later version adds are skipped, not fatal")
    func unknownFieldsTolerated() throws {
        var bytes = Wire.encode(.ping(WirePing()), requestID: 5)
        // Field 900, varint 1: a field this build has never heard of.
        bytes += [0xa0, 0x38, 0x01]
        let e = try Wire.decode(bytes)
        #expect(e.requestID == 5)
    }

    @Test("oversized input is refused before parsing")
    func tooLarge() {
        let bytes = [UInt8](repeating: 0, count: Wire.maxEnvelopeSize + 1)
        #expect(throws: WireError.tooLarge(Wire.maxEnvelopeSize + 1)) { try Wire.decode(bytes) }
    }
}

@Suite("Sweeps on the wire")
struct SweepWireTests {
    static func plannedJobs() -> [PlannedJob] {
        [PlannedJob(spec: JobSpec(name: "a", command: ["/bin/sh", "-c", "echo 'x;y'"], env: ["MESH_PARAM_LR": "0.1"], stage: "pretrain",
                                  parameters: [Parameter("lr", "0.1"), Parameter("name", "pretrain")], identity: "i1"),
                    identity: "i1", combination: 0, labels: ["0.1"]),
         PlannedJob(spec: JobSpec(name: "b", command: ["b"], stage: "finetune"), identity: "i2", dependsOn: ["i1"], combination: 0, labels: ["0.1"])]
    }

    @Test("a plan chunk and a state with sweeps survive encoding; the state's indexes come back equal")
    func roundTrip() throws {
        let chunk = PlanChunk(sweep: 0, name: "p.yaml", axes: ["lr"], stages: ["pretrain", "finetune"], total: 2, reuse: true,
                              provenance: Provenance(code: .git, commit: "abc", diffSummary: "diff --git a/x b/x"), at: 5, via: NodeID(9),
                              jobs: Self.plannedJobs(), final: true)
        let request = ClusterState.Request(client: .init(1), sequence: 3, command: .plan(chunk))
        #expect(try Wire.request(Wire.wire(request)) == request)

        var state = ClusterState()
        _ = state.apply(.init(client: .init(1), sequence: 1, command: .register(NodeID(1), name: "a", address: "a:1", capacity: .init(slots: 2))), at: 1)
        var staged = chunk
        staged.final = false
        staged.jobs.removeLast()
        _ = state.apply(.init(client: .init(1), sequence: 2, command: .plan(staged)), at: 2)
        _ = state.apply(request, at: 3)
        let back = try Wire.clusterState(Wire.encode(state))
        #expect(back == state)
        #expect(back.sweeps.count == 2)
        #expect(back.sweeps[1]?.staged.count == 1)
        #expect(back.sweeps[2]?.cells.count == 2)
        #expect(back.jobs[2]?.spec.after == [1])
        #expect(back.jobs[1]?.spec.parameters == [Parameter("lr", "0.1"), Parameter("name", "pretrain")])
    }

    @Test("the size estimate Raft batches by never undercounts the encoded size of a plan chunk or a submit")
    func estimateCoversEncoding() {
        let diff = String(repeating: "d", count: 5000)
        let chunk = PlanChunk(name: "p.yaml", axes: ["a"], stages: ["s"], total: 50, provenance: Provenance(code: .git, diffSummary: diff),
                              jobs: (0..<50).map { i in
                                  PlannedJob(spec: JobSpec(name: "job \(i)", command: ["/bin/sh", "-c", String(repeating: "é", count: i * 10)],
                                                           env: ["MESH_PARAM_A": "\(i)", "K": String(repeating: "v", count: i)], labels: ["zone": "z"],
                                                           results: ["out/*"], stage: "s", parameters: [Parameter("a", "\(i)")],
                                                           identity: String(repeating: "f", count: 64)),
                                             identity: String(repeating: "f", count: 64), dependsOn: i > 0 ? [String(repeating: "e", count: 64)] : [],
                                             combination: i, labels: ["\(i)"])
                              })
        let commands: [ClusterState.Command] = [
            .plan(chunk), .submit(chunk.jobs[49].spec, chunk.provenance, at: 1, via: NodeID(1)), .plan(PlanChunk()),
        ]
        for c in commands {
            let encoded = (try? Wire.wire(ClusterState.Request(client: .init(1), sequence: 1, command: c)).serializedBytes() as [UInt8])?.count ?? .max
            #expect(c.approximateSize >= encoded, "estimate \(c.approximateSize) < encoded \(encoded)")
        }
    }
}

@Suite("Wire: running a lab")
struct LabWireTests {
    @Test("drain, requeue, pinned canaries, a quarantined and a draining node and a job being requeued survive the log and a snapshot")
    func roundTrip() throws {
        let commands: [ClusterState.Command] = [
            .register(NodeID(1), name: "a", address: "a:1", capacity: .init(slots: 2)),
            .register(NodeID(2), name: "b", address: "b:1", capacity: .init(slots: 2)),
            .register(NodeID(3), name: "c", address: "c:1", capacity: .init(slots: 2)),
            .setSetting(key: "quarantine_after", value: "1"),
            .submit(JobSpec(command: ["sleep", "9"], node: NodeID(1)), Provenance(), at: 1, via: NodeID(1)),
            .assign([.init(job: 1, attempt: 1, node: NodeID(1), gpus: [], term: 1, at: 2)]),
            .drain(name: "a", deadlineMillis: 9000, leaving: true),
            .requeue([1], reason: "deadline", at: 9001),
            .submit(JobSpec(command: ["true"], node: NodeID(2)), Provenance(), at: 4, via: NodeID(1)),
            .assign([.init(job: 2, attempt: 1, node: NodeID(2), gpus: [], term: 1, at: 5)]),
            .finished(.init(job: 2, attempt: 1, node: NodeID(2), outcome: .failedToStart("disk"), at: 6)),
            .submit(JobSpec(command: ["true"], node: NodeID(2), canary: true), Provenance(), at: 7, via: NodeID(1)),
        ]
        var state = ClusterState()
        for (i, c) in commands.enumerated() {
            let request = ClusterState.Request(client: .init(1), sequence: UInt64(i + 1), command: c)
            #expect(try Wire.request(Wire.wire(request)) == request)
            #expect(state.apply(request, at: UInt64(i + 1)).isDone, "\(c)")
        }
        #expect(state.nodes[NodeID(1)]?.draining == true && state.nodes[NodeID(2)]?.quarantined == true)
        #expect(state.nodes[NodeID(2)]?.quarantinedIndex == 11 && state.canaries(of: NodeID(2)).map(\.id) == [3])
        #expect(state.jobs[1]?.requeueRequested == true && state.jobs[3]?.spec.canary == true)
        let back = try Wire.clusterState(Wire.encode(state))
        #expect(back == state)
    }
}
