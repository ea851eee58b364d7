/// Who is in the mesh and who is alive, without a head node: SWIM with the Lifeguard extensions
/// (DESIGN.md §4). `Membership.Instance` is a pure state machine; the agent (or the simulator)
/// feeds it packets and ticks and carries out the directives it returns.
public enum Membership {}

extension Membership {
    /// A member's state as this node sees it.
    public enum State: String, Sendable, CaseIterable, Comparable {
        case alive, suspect, dead, left

        /// Taking part in the protocol: probed, gossiped to, counted.
        public var isActive: Bool { self == .alive || self == .suspect }

        public static func < (a: State, b: State) -> Bool {
            State.allCases.firstIndex(of: a)! < State.allCases.firstIndex(of: b)!
        }
    }

    /// What a member tells the mesh about itself. It travels with every `alive` update; a change
    /// is published with a new incarnation.
    public struct Meta: Sendable, Hashable {
        public var name: String
        /// The address others dial: `HOST:PORT`.
        public var address: String
        public var nodeClass: String
        public var labels: [String: String]
        public var slots: Int
        public var cpus: Int
        public var memoryMB: Int
        public var gpus: Int
        public var gpuModel: String
        /// The mesh release the node runs.
        public var version: String
        public var protocolVersion: UInt32
        public var cordoned: Bool
        /// Machine setup: empty once done (or when there is none), else "running: …" or
        /// "failed: …". Only a node whose setup is done takes jobs.
        public var setup: String = ""

        public init(
            name: String, address: String, nodeClass: String = "", labels: [String: String] = [:],
            slots: Int = 1, cpus: Int = 1, memoryMB: Int = 0, gpus: Int = 0, gpuModel: String = "",
            version: String = "", protocolVersion: UInt32 = 1, cordoned: Bool = false
        ) {
            self.name = name
            self.address = address
            self.nodeClass = nodeClass
            self.labels = labels
            self.slots = slots
            self.cpus = cpus
            self.memoryMB = memoryMB
            self.gpus = gpus
            self.gpuModel = gpuModel
            self.version = version
            self.protocolVersion = protocolVersion
            self.cordoned = cordoned
        }
    }

    /// A member as this node knows it.
    public struct Member: Sendable, Equatable {
        public var id: NodeID
        public var meta: Meta
        public var incarnation: UInt64
        public var state: State
        /// When this node last saw the state change.
        public var stateSince: Instant
        /// When this node last received a packet straight from the member.
        public var lastHeard: Instant?

        public init(id: NodeID, meta: Meta, incarnation: UInt64, state: State, stateSince: Instant, lastHeard: Instant? = nil) {
            self.id = id
            self.meta = meta
            self.incarnation = incarnation
            self.state = state
            self.stateSince = stateSince
            self.lastHeard = lastHeard
        }

        var record: Record { Record(id: id, meta: meta, incarnation: incarnation, state: state) }
    }

    /// A member's entry in a full state exchange.
    public struct Record: Sendable, Equatable {
        public var id: NodeID
        public var meta: Meta
        public var incarnation: UInt64
        public var state: State

        public init(id: NodeID, meta: Meta, incarnation: UInt64, state: State) {
            self.id = id
            self.meta = meta
            self.incarnation = incarnation
            self.state = state
        }
    }

    /// A piece of gossip, piggybacked on other messages. The incarnation orders updates about one
    /// member: only the member itself raises it, to refute a suspicion or publish new metadata.
    public enum Update: Sendable, Equatable {
        case alive(NodeID, incarnation: UInt64, meta: Meta)
        case suspect(NodeID, incarnation: UInt64, from: NodeID)
        /// `from == node` is a graceful leave.
        case dead(NodeID, incarnation: UInt64, from: NodeID)

        public var node: NodeID {
            switch self {
            case .alive(let n, _, _), .suspect(let n, _, _), .dead(let n, _, _): n
            }
        }

        public var incarnation: UInt64 {
            switch self {
            case .alive(_, let i, _), .suspect(_, let i, _), .dead(_, let i, _): i
            }
        }
    }

    /// The protocol's messages.
    public enum Message: Sendable, Equatable {
        /// "Are you there?" to `target`; answered with an ack of the same sequence number.
        case ping(seq: UInt32, target: NodeID)
        case ack(seq: UInt32)
        /// "Ping `target` for me": an indirect probe through another member.
        case pingReq(seq: UInt32, target: NodeID, address: String, wantNack: Bool)
        /// Lifeguard: "I asked, and `target` did not answer me either" (so the asker is not the
        /// one with the problem).
        case nack(seq: UInt32)
        /// Updates only.
        case gossip
        /// A full state exchange: on join, and periodically so that partitions heal.
        case pushPull(join: Bool, reply: Bool, members: [Record])
        /// Answer to a join that cannot be accepted (its name belongs to another live member).
        case joinRejected(reason: String)
    }

    /// What travels between nodes: a message, its sender, and piggybacked gossip.
    public struct Packet: Sendable, Equatable {
        public var from: NodeID
        public var fromAddress: String
        public var message: Message
        public var updates: [Update]

        public init(from: NodeID, fromAddress: String, message: Message, updates: [Update] = []) {
            self.from = from
            self.fromAddress = fromAddress
            self.message = message
            self.updates = updates
        }
    }

    /// Where a packet goes: a known member, or a bare address (a seed, before we know its id).
    public enum Destination: Sendable, Hashable {
        case node(NodeID, address: String)
        case address(String)

        public var address: String {
            switch self {
            case .node(_, let a), .address(let a): a
            }
        }
    }

    /// What the shell must do.
    public enum Directive: Sendable, Equatable {
        case send(Packet, to: Destination)
        /// Call `onTick` at this instant (replaces any earlier request).
        case scheduleTick(at: Instant)
        /// A member appeared or changed state (for logs and the shell's own bookkeeping).
        case memberChanged(Member, previous: State?)
        /// Persist this node's incarnation before anything else is sent, so a restart continues
        /// above it.
        case persistIncarnation(UInt64)
        /// A seed accepted our join.
        case joined(via: NodeID)
        /// A seed refused our join; retrying will not help.
        case joinRejected(reason: String, by: String)
    }
}
