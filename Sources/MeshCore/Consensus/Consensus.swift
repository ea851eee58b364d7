/// The coordinator: Raft as a pure state machine (DESIGN.md §5), in etcd-raft's shape. Feed it
/// ticks, packets and proposals; it returns directives in the order they must be carried out:
/// persist before send, apply what is committed.
public enum Consensus {
    public typealias Term = UInt64
    public typealias Index = UInt64
}

extension Consensus {
    /// Who votes and who only follows the log.
    public struct Configuration: Sendable, Hashable, CustomStringConvertible {
        public var voters: Set<NodeID>
        /// Members that receive the log but do not vote (every other member of the mesh).
        public var learners: Set<NodeID>

        public init(voters: Set<NodeID>, learners: Set<NodeID> = []) {
            self.voters = voters
            self.learners = learners.subtracting(voters)
        }

        public static let empty = Configuration(voters: [])

        public var members: Set<NodeID> { voters.union(learners) }
        public var quorum: Int { voters.count / 2 + 1 }

        /// How many voters can fail with the coordinator still able to make progress.
        public var faultTolerance: Int { voters.isEmpty ? 0 : (voters.count - 1) / 2 }

        public var description: String {
            "voters \(voters.sorted().map(\.description)) learners \(learners.sorted().map(\.description))"
        }
    }

    /// What a log entry carries.
    public enum Payload: Sendable, Equatable {
        /// A new leader's first entry, to commit what earlier terms left.
        case noop
        case configuration(Configuration)
        case command(ClusterState.Request)

        var approximateSize: Int {
            switch self {
            case .noop: 16
            case .configuration(let c): 32 + c.members.count * 10
            case .command(let r): r.command.approximateSize
            }
        }
    }

    public struct Entry: Sendable, Equatable {
        public var index: Index
        public var term: Term
        public var payload: Payload

        public init(index: Index, term: Term, payload: Payload) {
            self.index = index
            self.term = term
            self.payload = payload
        }
    }

    /// What must survive a crash besides the log: the term and the vote cast in it.
    public struct HardState: Sendable, Equatable {
        public var term: Term
        public var votedFor: NodeID?

        public init(term: Term = 0, votedFor: NodeID? = nil) {
            self.term = term
            self.votedFor = votedFor
        }
    }

    /// The state machine at an index, replacing the log up to it.
    public struct Snapshot: Sendable, Equatable {
        public var index: Index
        public var term: Term
        public var configuration: Configuration
        /// The encoded ClusterState (opaque to Raft).
        public var data: [UInt8]

        public init(index: Index, term: Term, configuration: Configuration, data: [UInt8]) {
            self.index = index
            self.term = term
            self.configuration = configuration
            self.data = data
        }
    }

    /// What the shell read from disk at start-up.
    public struct Stored: Sendable, Equatable {
        public var hardState: HardState
        public var snapshot: Snapshot?
        /// Entries after the snapshot, in order.
        public var entries: [Entry]

        public init(hardState: HardState = .init(), snapshot: Snapshot? = nil, entries: [Entry] = []) {
            self.hardState = hardState
            self.snapshot = snapshot
            self.entries = entries
        }

        /// The store of the first node of a new mesh: one entry making it the only voter.
        public static func bootstrap(_ id: NodeID) -> Stored {
            Stored(hardState: HardState(term: 1), entries: [Entry(index: 1, term: 1, payload: .configuration(Configuration(voters: [id])))])
        }
    }

    /// A follower's answer to an append.
    public struct AppendResult: Sendable, Equatable {
        public var success: Bool
        /// Success: the last index now known to match. Failure: where to try next (etcd's
        /// RejectHint), with the term our log has there (0 if none), for fast back-off.
        public var index: Index
        public var hintTerm: Term

        public init(success: Bool, index: Index, hintTerm: Term = 0) {
            self.success = success
            self.index = index
            self.hintTerm = hintTerm
        }
    }

    public enum Message: Sendable, Equatable {
        case preVote(lastIndex: Index, lastTerm: Term)
        case preVoteResponse(granted: Bool)
        /// `transfer`: a leadership transfer, which overrides the leader lease.
        case vote(lastIndex: Index, lastTerm: Term, transfer: Bool)
        case voteResponse(granted: Bool)
        case append(prevIndex: Index, prevTerm: Term, entries: [Entry], commit: Index)
        case appendResponse(AppendResult)
        case snapshot(Snapshot)
        case snapshotResponse(matchIndex: Index)
        /// From the leader during a transfer: "start an election now".
        case timeoutNow
    }

    public struct Packet: Sendable, Equatable {
        public var from: NodeID
        public var to: NodeID
        public var term: Term
        public var message: Message
        /// The sender's clock when it sent this (set by the instance; opaque to the receiver).
        public var clock: Instant
        /// The latest `clock` the sender has received from the receiver (zero: none). It proves a
        /// round trip: the receiver's packet sent at `echo` arrived, and the sender answered. The
        /// leader judges its quorum by it, and a worker its lease (DESIGN.md §6).
        public var echo: Instant

        public init(from: NodeID, to: NodeID, term: Term, message: Message, clock: Instant = .zero, echo: Instant = .zero) {
            self.from = from
            self.to = to
            self.term = term
            self.message = message
            self.clock = clock
            self.echo = echo
        }
    }

    public enum Role: String, Sendable {
        case follower, preCandidate = "pre-candidate", candidate, leader
    }

    /// What the shell must do, in this order. Persist is synchronous: nothing after it (and no
    /// later event) is handled before it is durable. A leader's own new entries are the one case
    /// where sends come before the persist of the same entries, which is safe because the leader
    /// counts itself towards a commit only in a later event.
    public enum Directive: Sendable, Equatable {
        /// Make durable (fsync) before carrying out anything after it: the hard state if given,
        /// then drop entries after `truncateAfter` if given, then append `entries`.
        case persist(HardState?, entries: [Entry], truncateAfter: Index?)
        /// Make this snapshot durable. `discardLog`: drop the whole log (a snapshot installed from
        /// the leader replaces it); otherwise drop only the entries up to the snapshot's index (our
        /// own compaction).
        case persistSnapshot(Snapshot, discardLog: Bool)
        case send(Packet)
        /// Committed entries, in order: apply them to the state machine.
        case apply([Entry])
        /// Replace the state machine with a snapshot received from the leader.
        case restore(Snapshot)
        /// Call `onTick` at this instant (replaces any earlier request).
        case scheduleTick(at: Instant)
        /// The role, term or known leader changed.
        case roleChanged(Role, term: Term, leader: NodeID?)
        /// A packet was dropped unread: a term or index no correct node could have sent (for the
        /// shell to log; dropping is always safe, Raft tolerates lost messages).
        case dropped(Packet, reason: String)
    }

    /// Why a proposal was not taken.
    public enum ProposalError: Error, Sendable, Equatable {
        /// Ask this node instead (nil: no leader known).
        case notLeader(NodeID?)
        case transferring
        /// Another configuration change is still in flight.
        case configurationChangePending
        /// Single-server changes only: at most one voter added or removed at a time.
        case invalidConfiguration(String)
    }
}
