import Foundation
import MeshAgent
import MeshCore
import MeshTestSupport
import MeshTransport
import MeshWire

/// An agent running in this process on a free loopback port, with its own data directory.
struct RunningAgent {
    let agent: Agent
    let directory: TemporaryDirectory
    let secret: ClusterSecret

    init(name: String = "a", secretFrom other: RunningAgent? = nil, key: String? = nil, maxMessageSize: Int64? = nil,
         seeds: [AgentAddress] = [], snapshotEvery: UInt64? = nil, reuse: TemporaryDirectory? = nil) throws {
        directory = try reuse ?? TemporaryDirectory("ma")
        let dir = DataDirectory(path: directory.sub("d"))
        if reuse == nil { _ = try MeshSetup.initialise(dir, existingKey: key ?? other.map { $0.secret.text }) }
        secret = try dir.readKey()
        var settings = TransportSettings()
        settings.handshakeTimeout = .seconds(2)
        if let maxMessageSize { settings.maxMessageSize = maxMessageSize }
        var coordinator = CoordinatorSettings()
        if let snapshotEvery { coordinator.snapshotEvery = snapshotEvery }
        agent = try Agent.start(AgentConfiguration(
            name: name, dataDirectory: dir, listen: .tcp(host: "127.0.0.1", port: 0), seeds: seeds, transport: settings,
            coordinator: coordinator))
    }

    var tcp: AgentAddress { agent.boundAddress }
    var local: AgentAddress { agent.configuration.dataDirectory.localAddress }

    func stop() {
        agent.shutdown()
        directory.remove()
    }

    /// Pings the agent over TCP with the mesh's key (on a thread of its own) and returns who answered.
    func ping() async throws -> WireNodeInfo {
        let address = tcp, secret = secret
        return try await onThread {
            let c = try MeshClient(address: address, secret: secret)
            defer { c.close() }
            return try c.ping().node
        }
    }

    /// A raw client with this mesh's client key, for sending bytes the MeshClient never would.
    func rawClient(_ address: AgentAddress? = nil) throws -> RequestClient {
        try RequestClient(
            endpoint: (address ?? tcp).endpoint, security: TransportSecurity.curve(secret.keys).client(as: .client))
    }
}

/// Sends raw frames and decodes the one reply.
func rawRequest(_ client: RequestClient, _ frames: [[UInt8]]) throws -> WireEnvelope {
    let m = try client.request(frames, timeout: .seconds(5))
    return try Wire.decode(m.frames.last ?? [])
}

/// How a client call failed, or nil if it succeeded.
func clientFailure(_ body: () throws(ClientError) -> Void) -> ClientError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}
