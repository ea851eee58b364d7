import MeshTransport

/// What can stop `mesh init` or `mesh agent`, said so that the user knows what to do.
public enum AgentError: UserFacingError, Equatable {
    case dataDirectory(String, String)
    case noClusterKey(String)
    case badClusterKey(String, String)
    case keyPermissions(String, mode: UInt32)
    case alreadyInitialised(String)
    case alreadyRunning(String, pid: Int32?)
    case listen(String, TransportError)
    case socketPathTooLong(String)
    case transport(TransportError)
    case store(StoreError)
    /// node.id says this host was a member, and state.db is gone or empty.
    case lostState(String)

    public var exitCode: Int32 { ExitStatus.error }

    public var description: String {
        switch self {
        case .dataDirectory(let path, let why):
            "cannot use data directory \(path): \(why); choose another with --data-dir or MESH_HOME"
        case .noClusterKey(let path):
            "no cluster key in \(path): run `mesh init` to make a new mesh here, or `mesh join TOKEN` to join one"
        case .badClusterKey(let file, let why):
            "cannot read the cluster key \(file): \(why)"
        case .keyPermissions(let file, let mode):
            "the cluster key \(file) can be read by other users (mode \(String(mode, radix: 8))); run `chmod 600 \(file)`"
        case .alreadyInitialised(let path):
            "\(path) already holds a mesh's cluster key; use it as it is, or choose another --data-dir"
        case .alreadyRunning(let path, let pid):
            "an agent is already running with data directory \(path)\(pid.map { " (pid \($0))" } ?? ""); stop it first or use another --data-dir"
        case .listen(let address, let e):
            if e.isAddressInUse {
                "cannot listen on \(address): the address is already in use (another mesh agent?); choose another with --listen"
            } else if e.isPermissionDenied {
                "cannot listen on \(address): permission denied (ports below 1024 need root); choose another with --listen"
            } else {
                "cannot listen on \(address): \(e.detail)"
            }
        case .socketPathTooLong(let path):
            "the local socket path \(path) is longer than the 107 bytes the system allows; use a shorter --data-dir"
        case .transport(let e):
            "transport failure: \(e)"
        case .store(let e):
            e.description
        case .lostState(let path):
            "\(path) holds this host's node id (node.id), but its state database (state.db) is missing or empty: started from it, the node would forget its log and the votes it cast, which Raft's safety rests on. Restore state.db, or start this host over as a new member with `mesh agent --rejoin-as-new` (or `mesh join --rejoin-as-new TOKEN`); its old identity is then left behind"

        }
    }
}
