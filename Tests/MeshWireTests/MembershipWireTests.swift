import MeshCore
import Testing

@testable import MeshWire

@Suite("Membership on the wire")
struct MembershipWireTests {
    static let meta = Membership.Meta(
        name: "gpu-3", address: "10.1.2.3:7770", nodeClass: "a100", labels: ["zone": "lab1", "rack": "4"], slots: 8,
        cpus: 64, memoryMB: 512_000, gpus: 8, gpuModel: "NVIDIA A100", version: "0.1.0", protocolVersion: 1, cordoned: true)

    static let packets: [Membership.Packet] = {
        let updates: [Membership.Update] = [
            .alive(NodeID(7), incarnation: 3, meta: meta), .suspect(NodeID(8), incarnation: 1, from: NodeID(9)),
            .dead(NodeID(10), incarnation: 2, from: NodeID(10)),
        ]
        let messages: [Membership.Message] = [
            .ping(seq: 1, target: NodeID(2)), .ack(seq: 1), .pingReq(seq: 5, target: NodeID(3), address: "h:1", wantNack: true),
            .nack(seq: 5), .gossip,
            .pushPull(join: true, reply: false, members: [Membership.Record(id: NodeID(4), meta: meta, incarnation: 9, state: .suspect)]),
            .joinRejected(reason: "name taken"),
        ]
        return messages.map { Membership.Packet(from: NodeID(1), fromAddress: "a:7770", message: $0, updates: updates) }
    }()

    @Test("every membership message survives the trip through protobuf", arguments: packets)
    func roundTrip(packet: Membership.Packet) throws {
        let bytes = Wire.encode(packet)
        let envelope = try Wire.decode(bytes)
        guard case .gossip(let w) = envelope.body else {
            Issue.record("not a gossip envelope")
            return
        }
        #expect(try Wire.packet(w) == packet)
    }

    @Test("packets a peer got wrong are malformed, with the reason")
    func invalid() {
        var noSender = Wire.wire(Self.packets[0])
        noSender.from = 0
        #expect(throws: WireError.malformed("gossip packet without a sender")) { try Wire.packet(noSender) }

        var noMessage = Wire.wire(Self.packets[0])
        noMessage.message = nil
        #expect(throws: WireError.self) { try Wire.packet(noMessage) }

        var aliveWithoutMeta = Wire.wire(Self.packets[0])
        aliveWithoutMeta.updates[0].clearMeta()
        #expect(throws: WireError.malformed("alive update without metadata")) { try Wire.packet(aliveWithoutMeta) }

        var unknownKind = Wire.wire(Self.packets[0])
        unknownKind.updates[1].kind = .UNRECOGNIZED(42)
        #expect(throws: WireError.self) { try Wire.packet(unknownKind) }

        var longName = Wire.wire(Self.packets[0])
        longName.updates[0].meta.name = String(repeating: "x", count: 1000)
        #expect(throws: WireError.self) { try Wire.packet(longName) }

        var flood = Wire.wire(Self.packets[0])
        flood.updates = Array(repeating: flood.updates[1], count: Wire.Limits.maxUpdates + 1)
        #expect(throws: WireError.self) { try Wire.packet(flood) }

        var badRecord = Wire.wire(Self.packets[5])
        if case .pushPull(var pp)? = badRecord.message {
            pp.members[0].state = .unspecified
            badRecord.message = .pushPull(pp)
        }
        #expect(throws: WireError.malformed("member record of unknown state")) { try Wire.packet(badRecord) }
    }
}
