import MeshCore
import MeshTransport

/// What `mesh init` does, as a library function the CLI and tests call.
public enum MeshSetup {
    /// The outcome of creating (or importing) a mesh's key in a data directory.
    public struct Created: Sendable, Equatable {
        public var dataDirectory: DataDirectory
        public var keyFile: String
        public var fingerprint: String
        /// The key came from an existing mesh rather than being made here.
        public var imported: Bool
    }

    /// Creates the data directory and a new cluster key in it, or stores `existingKey` (the text of
    /// another host's key) so this host belongs to that mesh. Never replaces a key.
    public static func initialise(_ dir: DataDirectory, existingKey: String? = nil) throws(AgentError) -> Created {
        try dir.create()
        if dir.hasKey { throw .alreadyInitialised(dir.path) }
        let secret: ClusterSecret
        if let existingKey {
            do {
                secret = try ClusterSecret(text: existingKey)
            } catch {
                throw .badClusterKey("the key given with --key", error.description)
            }
        } else {
            secret = ClusterSecret.generate()
        }
        try dir.writeKey(secret)
        if existingKey == nil {
            // The first node of a new mesh: its log starts with itself as the only voter.
            let id = try dir.loadOrCreateNodeID()
            do {
                let store = try RaftStore(path: dir.stateDatabase)
                let b = Consensus.Stored.bootstrap(id)
                try store.persist(b.hardState, entries: b.entries, truncateAfter: nil)
            } catch {
                throw .store(error)
            }
        }
        return Created(dataDirectory: dir, keyFile: dir.keyFile, fingerprint: secret.keys.fingerprint, imported: existingKey != nil)
    }
}
