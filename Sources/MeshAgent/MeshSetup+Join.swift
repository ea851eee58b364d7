import Foundation
import MeshCore
import MeshTransport
import MeshWire

/// `mesh init`, `mesh join`, `mesh leave` and `mesh token` as library functions.
extension MeshSetup {
    /// An agent started in the background and answering.
    public struct Started: Sendable {
        public var pid: Int32
        public var address: AgentAddress
        public var status: WireStatusReply
    }

    /// Starts the directory's agent in the background with `arguments` (its options) and waits until
    /// it answers on its local socket.
    public static func startAgent(_ dir: DataDirectory, arguments: [String], timeout: Duration = .seconds(15)) throws -> Started {
        let (pid, address) = try AgentLauncher.start(dir, arguments: arguments, timeout: timeout)
        let secret = try dir.readKey()
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                let client = try MeshClient(address: dir.localAddress, secret: secret)
                defer { client.close() }
                return Started(pid: pid, address: address, status: try client.status(local: true, timeout: .seconds(2)))
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                usleep(50_000)
            }
        }
    }

    /// The join token of the mesh the directory's running agent belongs to: the cluster key and
    /// up to `seeds` live members' addresses (the local agent first).
    public static func token(_ dir: DataDirectory, seeds: Int = 3) throws -> JoinToken {
        let secret = try dir.readKey()
        let client = try MeshClient(address: dir.localAddress, secret: secret)
        defer { client.close() }
        let status = try client.status(local: true)
        var addresses: [AgentAddress] = []
        if let me = try? AgentAddress(parsing: status.node.advertise) { addresses.append(me) }
        for m in status.members where m.record.node != status.nodeID && Membership.State(m.record.state) == .alive {
            if addresses.count >= seeds { break }
            if let a = try? AgentAddress(parsing: m.record.meta.address) { addresses.append(a) }
        }
        return JoinToken(secret: secret, seeds: addresses)
    }

    /// How a join ended.
    public enum JoinOutcome: Sendable {
        /// The agent started and a seed accepted it.
        case joined(Started)
        /// An agent of this mesh was already running on the directory.
        case alreadyMember(pid: Int32, WireStatusReply)
    }

    /// `mesh join`: stores the token's key, checks that a seed answers with it, starts the agent in
    /// the background and waits until a seed has accepted it. On failure the agent is stopped again
    /// and the reason thrown.
    public static func join(
        _ token: JoinToken, dir: DataDirectory, agentArguments: [String], timeout: Duration = .seconds(30)
    ) throws -> JoinOutcome {
        try dir.create()
        if dir.hasKey {
            let existing = try dir.readKey()
            guard existing == token.secret else { throw JoinError.otherMesh(dir.path, existing.keys.fingerprint) }
        }
        if let pid = AgentLauncher.runningAgent(dir) {
            let client = try MeshClient(address: dir.localAddress, secret: token.secret)
            defer { client.close() }
            return .alreadyMember(pid: pid, try client.status(local: true))
        }
        try preflight(token)
        if !dir.hasKey { try dir.writeKey(token.secret) }

        let seedArgs = token.seeds.flatMap { ["--join", $0.description] }
        let started: Started
        do {
            started = try startAgent(dir, arguments: agentArguments + seedArgs)
        } catch {
            AgentLauncher.stop(dir)
            throw error
        }
        let deadline = ContinuousClock.now + timeout
        var last = started.status
        while true {
            switch last.join.state {
            case .joined:
                return .joined(Started(pid: started.pid, address: started.address, status: last))
            case .failed:
                AgentLauncher.stop(dir)
                throw JoinError.refused(last.join.error)
            default:
                break
            }
            guard ContinuousClock.now < deadline else {
                AgentLauncher.stop(dir)
                throw JoinError.timedOut(token.seeds.map(\.description), last.join.error)
            }
            usleep(50_000)
            let client = try MeshClient(address: dir.localAddress, secret: token.secret)
            last = (try? client.status(local: true)) ?? last
            client.close()
        }
    }

    /// Pings each seed with the token's key, so that a wrong token or a seed that is down is
    /// reported before any agent starts. Succeeds if one seed answers.
    static func preflight(_ token: JoinToken) throws {
        var errors: [ClientError] = []
        for seed in token.seeds {
            do {
                let client = try MeshClient(address: seed, secret: token.secret)
                defer { client.close() }
                _ = try client.ping(timeout: .seconds(3))
                return
            } catch {
                errors.append(error)
            }
        }
        // A refused key says more than an unreachable host.
        if let keyError = errors.first(where: { if case .keyRejected = $0 { true } else { false } }) { throw keyError }
        if let versionError = errors.first(where: { if case .remote(_, .incompatibleVersion, _) = $0 { true } else { false } }) {
            throw versionError
        }
        throw JoinError.noSeed(errors.map(\.description))
    }

    /// `mesh leave`: the local agent tells the mesh it is leaving, then stops. Returns how many
    /// members it told directly.
    public static func leave(_ dir: DataDirectory, timeout: Duration = .seconds(15)) throws -> Int {
        let secret = try dir.readKey()
        guard AgentLauncher.runningAgent(dir) != nil else { throw JoinError.notRunning(dir.path) }
        let client = try MeshClient(address: dir.localAddress, secret: secret)
        defer { client.close() }
        let told = try client.leave()
        guard AgentLauncher.waitUntilStopped(dir, timeout: timeout) else { throw JoinError.didNotStop(dir.path) }
        return told
    }
}

public enum JoinError: UserFacingError, Equatable {
    case otherMesh(String, String)
    case noSeed([String])
    case refused(String)
    case timedOut([String], String)
    case notRunning(String)
    case didNotStop(String)

    public var exitCode: Int32 {
        switch self {
        case .noSeed, .timedOut: ExitStatus.unreachable
        case .refused(let why): why.contains("--name") ? ExitStatus.error : ExitStatus.unreachable
        case .otherMesh, .notRunning, .didNotStop: ExitStatus.error
        }
    }

    public var description: String {
        switch self {
        case .otherMesh(let dir, let fp):
            "\(dir) already belongs to mesh \(fp), not the token's; use another --data-dir, or `mesh leave` and remove \(dir) first"
        case .noSeed(let errors):
            "no agent named in the token answered:\n  " + errors.joined(separator: "\n  ")
        case .refused(let why):
            "the mesh refused this host: \(why)"
        case .timedOut(let seeds, let last):
            "no seed (\(seeds.joined(separator: ", "))) accepted the join in time\(last.isEmpty ? "" : " (last error: \(last))")"
        case .notRunning(let dir):
            "no agent is running with data directory \(dir)"
        case .didNotStop(let dir):
            "the agent of \(dir) did not stop; its pid is in \(dir)/agent.pid"
        }
    }
}
