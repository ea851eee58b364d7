import ArgumentParser
import Foundation
import MeshAgent

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make a new mesh on this host: create the data directory and the cluster key.",
        discussion: """
            The cluster key (cluster.key, mode 0600) is the mesh's one secret: every CURVE key pair \
            of the mesh derives from it, and anyone who holds it can talk to the mesh. Copy it only to \
            hosts that should belong to the mesh.
            """
    )

    @OptionGroup var data: DataOptions

    @Option(name: .long, help: ArgumentHelp("Use the cluster key in FILE (another host's cluster.key) instead of making a new one.", valueName: "FILE"))
    var key: String?

    func run() throws {
        try reportingErrors {
            var existing: String?
            if let key {
                guard let text = try? String(contentsOfFile: key, encoding: .utf8) else {
                    throw AgentError.badClusterKey(key, "cannot read the file")
                }
                existing = text
            }
            let made = try MeshSetup.initialise(data.directory, existingKey: existing)
            print(made.imported
                ? "Stored the key of mesh \(made.fingerprint) in \(made.dataDirectory.path)"
                : "Created mesh \(made.fingerprint) in \(made.dataDirectory.path)")
            print("  cluster key  \(made.keyFile)  (mode 0600; a secret: whoever holds it can use the mesh)")
            print("Start this host's agent with: mesh agent --data-dir \(made.dataDirectory.path)")
        }
    }
}
