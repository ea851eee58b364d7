import Foundation
import Logging
import MeshCore
import MeshTransport
import MeshWire
import Synchronization

/// What an agent is started with.
public struct AgentConfiguration: Sendable {
    /// The node's name in the mesh; defaults to the host name.
    public var name: String
    public var dataDirectory: DataDirectory
    /// Where to listen for peers and remote clients (`--listen`).
    public var listen: AgentAddress
    /// The address other hosts should dial (`--advertise`); defaults to the bound address, with the
    /// host name in place of a wildcard.
    public var advertise: AgentAddress?
    /// Agents to join through (`--join`); none: the first member of a new mesh.
    public var seeds: [AgentAddress]
    public var nodeClass: String
    public var labels: [String: String]
    public var slots: Int
    /// GPUs to offer; nil: what `nvidia-smi` reports (none without it).
    public var gpus: Int?
    public var transport: TransportSettings
    public var membership: Membership.Settings
    public var coordinator: CoordinatorSettings
    public var jobs: JobSettings
    /// Machine setup and idle shutdown.
    public var lifecycle = LifecycleSettings()
    /// Start over as a new member (a new node id) when node.id exists but state.db is missing or
    /// empty (`--rejoin-as-new`); without it the agent refuses to start from such a directory.
    public var rejoinAsNew = false

    public init(
        name: String = AgentConfiguration.defaultName, dataDirectory: DataDirectory,
        listen: AgentAddress = .tcp(host: "0.0.0.0", port: AgentAddress.defaultPort),
        advertise: AgentAddress? = nil, seeds: [AgentAddress] = [], nodeClass: String = "",
        labels: [String: String] = [:], slots: Int = 1, gpus: Int? = nil,
        transport: TransportSettings = .init(), membership: Membership.Settings = .init(),
        coordinator: CoordinatorSettings = .init(), jobs: JobSettings = .init()
    ) {
        self.name = name
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.advertise = advertise
        self.seeds = seeds
        self.nodeClass = nodeClass
        self.labels = labels
        self.slots = slots
        self.gpus = gpus
        self.transport = transport
        self.membership = membership
        self.coordinator = coordinator
        self.jobs = jobs
    }

    public static var defaultName: String {
        ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
    }
}

/// A running agent: its data directory locked, its key loaded, its transport listening on TCP and
/// on the local ipc socket. Stop it with `shutdown()`.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    public let keys: MeshKeys
    /// The TCP endpoint actually bound (with the real port when `--listen` asked for port 0).
    public let boundAddress: AgentAddress
    public let advertisedAddress: AgentAddress
    public let nodeID: NodeID
    private let transport: Transport
    private let stop = Box(false)
    private let directoryLock: DirectoryLock
    private let logger: Logger

    /// Starts an agent. Fails with a clear `AgentError` if the data directory, key or port cannot
    /// be used; nothing is left running then.
    public static func start(_ configuration: AgentConfiguration, logger: Logger = Logger(label: "mesh.agent")) throws(AgentError) -> Agent {
        let dir = configuration.dataDirectory
        if let warning = try dir.create() { logger.warning("\(warning)") }
        let secret = try dir.readKey()
        let lock = try dir.lock()
        do {
            try dir.checkState(rejoinAsNew: configuration.rejoinAsNew, logger: logger)
            let id = try dir.loadOrCreateNodeID()
            return try Agent(configuration: configuration, secret: secret, id: id, lock: lock, logger: logger)
        } catch {
            lock.release()
            throw error
        }
    }

    private init(configuration: AgentConfiguration, secret: ClusterSecret, id: NodeID, lock: DirectoryLock, logger: Logger) throws(AgentError) {
        let dir = configuration.dataDirectory
        guard dir.socketPath.utf8.count <= 107 else { throw .socketPathTooLong(dir.socketPath) }
        var tagged = logger
        tagged[metadataKey: "node"] = "\(configuration.name)"
        let logger = tagged
        self.configuration = configuration
        self.keys = secret.keys
        self.directoryLock = lock
        self.logger = logger
        self.nodeID = id

        let node = Box<WireNodeInfo>(WireNodeInfo())
        let stop = self.stop
        let transport: Transport
        do {
            transport = try Transport(settings: configuration.transport, security: .curve(secret.keys), logger: logger) { _ in
                AgentHandler(node: node, logger: logger, requestStop: { stop.set(true) })
            }
        } catch {
            throw .transport(error as? TransportError ?? TransportError("start", detail: "\(error)"))
        }
        self.transport = transport

        // A socket file left by an agent that crashed would make the bind fail; the lock we hold
        // proves that no live agent owns it.
        unlink(dir.socketPath)
        let listen = configuration.listen
        let bound: String
        do {
            bound = try transport.run { loop in try loop.listen(listen.endpoint) }
            _ = try transport.run { loop in try loop.listen(dir.localAddress.endpoint) }
        } catch {
            transport.shutdown()
            throw .listen(listen.description, error as? TransportError ?? TransportError("listen", detail: "\(error)"))
        }
        chmod(dir.socketPath, 0o600)
        boundAddress = AgentAddress(endpoint: bound) ?? listen
        advertisedAddress = configuration.advertise ?? Agent.defaultAdvertise(boundAddress)

        var info = WireNodeInfo()
        info.name = configuration.name
        info.version = MeshVersion.string
        info.protocolVersion = Wire.protocolVersion
        info.meshFingerprint = secret.keys.fingerprint
        info.advertise = advertisedAddress.description
        node.set(info)

        // Membership: this node's metadata, one incarnation above the last it published.
        let hardware = Hardware.detect()
        var meta = Membership.Meta(
            name: configuration.name, address: advertisedAddress.description, nodeClass: configuration.nodeClass,
            labels: configuration.labels, slots: configuration.slots, cpus: hardware.cpus, memoryMB: hardware.memoryMB,
            gpus: configuration.gpus ?? hardware.gpus, gpuModel: hardware.gpuModel, version: MeshVersion.string,
            protocolVersion: Wire.protocolVersion)
        meta.setup = Lifecycle.initialSetupState(configuration.lifecycle, dir)
        let firstMeta = meta
        let incarnation = min(dir.readIncarnation(), Limits.maxIncarnation) + 1
        // The agents it joined through are kept, so that an agent restarted before it has learnt
        // any member from the log (killed right after `mesh join`) finds the mesh again instead of
        // starting alone.
        var seeds = configuration.seeds.map(\.description)
        if seeds.isEmpty {
            seeds = ((try? String(contentsOfFile: dir.seedsFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        } else {
            try? dir.writeAtomically(dir.seedsFile, seeds.joined(separator: "\n") + "\n")
        }
        let startSeeds = seeds
        let settings = configuration.membership
        let coordinatorSettings = configuration.coordinator
        let store: RaftStore
        do {
            store = try RaftStore(path: dir.stateDatabase)
        } catch {
            transport.shutdown()
            throw .store(error)
        }
        do {
            try transport.run { loop in
                guard let handler = loop.handler as? AgentHandler else { return }
                let shell = MembershipShell(
                    id: id, meta: firstMeta, incarnation: incarnation, settings: settings, dataDirectory: dir, logger: logger, loop: loop)
                handler.membership = shell
                let consensus = try ConsensusShell(
                    id: id, store: store, settings: coordinatorSettings, membership: shell, node: node, logger: logger,
                    requestStop: { stop.set(true) }, loop: loop, post: { [weak transport] work in transport?.execute(work) })
                handler.consensus = consensus
                let jobs = try JobsShell(
                    id: id, name: configuration.name, consensus: consensus, membership: shell, directory: dir,
                    settings: configuration.jobs, logger: logger, post: { [weak transport] work in transport?.execute(work) })
                handler.jobs = jobs
                let lifecycle = Lifecycle(
                    id: id, directory: dir, secret: secret, settings: configuration.lifecycle, consensus: consensus, membership: shell,
                    jobs: jobs, logger: logger, post: { [weak transport] work in transport?.execute(work) })
                lifecycle.leave = { [weak handler] loop, then in
                    guard let handler else { return then(loop) }
                    handler.leave(loop: loop) { _, loop in then(loop) }
                }
                lifecycle.requestStop = { stop.set(true) }
                handler.lifecycle = lifecycle
                consensus.onApplied = { [weak jobs] loop in jobs?.applied(loop: loop) }
                shell.onMemberChange = { [unowned loop, weak consensus] m, _ in consensus?.memberChanged(m, loop: loop) }
                shell.onConnectionLost = { [unowned loop, weak consensus] address in consensus?.connectionLost(to: address, loop: loop) }
                shell.start(seeds: startSeeds + consensus.knownAddresses.filter { !startSeeds.contains($0) }, loop: loop)
                consensus.start(loop: loop)
                jobs.start(loop: loop)
                lifecycle.start(loop: loop)
            }
            try dir.writeAtomically(dir.endpointFile, boundAddress.endpoint + "\n")
        } catch {
            transport.shutdown()
            if let e = error as? StoreError { throw .store(e) }
            if let e = error as? ArchiveError { throw .transport(TransportError("jobs", detail: e.description)) }
            throw error as? AgentError ?? .transport(TransportError("start", detail: "\(error)"))
        }
        logger.info("agent listening", metadata: [
            "tcp": "\(boundAddress)", "local": "\(dir.socketPath)", "advertise": "\(advertisedAddress)",
            "mesh": "\(keys.fingerprint)", "version": "\(MeshVersion.string)", "id": "\(id)",
        ])
    }

    public var isRunning: Bool { transport.isRunning }

    /// Why joining failed for good (wrong key, name taken, incompatible version), if it did.
    public var joinFailure: String? {
        try? transport.run { loop -> String? in
            guard let shell = (loop.handler as? AgentHandler)?.membership, case .failed(let why) = shell.join else { return nil }
            return why
        }
    }

    /// The agent's view of the mesh, as `mesh status` shows it.
    public func status() -> WireStatusReply? {
        try? transport.run { loop -> WireStatusReply? in
            guard let handler = loop.handler as? AgentHandler else { return nil }
            return handler.status(loop: loop)
        }
    }

    /// Hands `frames` to the agent's request handling on its I/O thread, as if they had come in on
    /// its listening socket from a connection whose key has the ZAP user id `userID` ("client",
    /// "peer"): for tests and fuzzing, with no socket involved. Replies go to a route that does not
    /// exist and are dropped.
    public func deliver(_ frames: [[UInt8]], userID: String?) {
        try? transport.run { loop in
            loop.handler?.received(InboundMessage(source: .listener(Route([0, 0x6d, 0x65, 0x73, 0x68])), frames: frames, userID: userID,
                                                  peerAddress: "in-process"), loop: loop)
        }
    }

    /// The agent was asked to stop (by `mesh leave`); the owner of the process should call
    /// `shutdown()`.
    public var stopRequested: Bool { stop.value }

    /// Closes every socket, removes the endpoint file and socket, and releases the data directory.
    public func shutdown() {
        guard transport.isRunning else { return }
        logger.info("agent shutting down")
        transport.shutdown()
        let dir = configuration.dataDirectory
        unlink(dir.endpointFile)
        unlink(dir.socketPath)
        directoryLock.release()
    }

    private static func defaultAdvertise(_ bound: AgentAddress) -> AgentAddress {
        if case .tcp(let host, let port) = bound, host == "0.0.0.0" {
            return .tcp(host: ProcessInfo.processInfo.hostName, port: port)
        }
        return bound
    }
}

/// A value written once on one thread and read on another.
final class Box<T: Sendable>: Sendable {
    private let m: Mutex<T>
    init(_ value: T) { m = Mutex(value) }
    var value: T { m.withLock { $0 } }
    func set(_ v: T) { m.withLock { $0 = v } }
}
