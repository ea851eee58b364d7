import ArgumentParser
import Foundation
import MeshAgent
import MeshTransport

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Make a new mesh on this host and start its first agent; prints the join token for other hosts.",
        discussion: """
            Creates the data directory and the cluster key (cluster.key, mode 0600): the mesh's one \
            secret, from which every CURVE key pair of the mesh derives. The join token it prints \
            holds that secret: whoever has it can join the mesh. The agent runs in the background \
            (log: agent.log in the data directory) unless --foreground is given.
            """
    )

    @OptionGroup var data: DataOptions
    @OptionGroup var agent: AgentOptions
    @OptionGroup var log: LogOptions

    @Flag(name: .long, help: "Run the agent in this process instead of in the background.")
    var foreground = false

    func run() throws {
        Logging.bootstrap(log.logLevel)
        try reportingErrors {
            let dir = data.directory
            let made = try MeshSetup.initialise(dir)
            let secret = try dir.readKey()
            if foreground {
                SignalWaiter.install()
                let running = try Agent.start(try agent.configuration(dir))
                printCreated(made, agent: agent.name, pid: getpid(), address: running.advertisedAddress,
                             token: JoinToken(secret: secret, seeds: [running.advertisedAddress]))
                try runUntilStopped(running)
                return
            }
            let started = try MeshSetup.startAgent(dir, arguments: agent.arguments + log.arguments)
            let advertised = (try? AgentAddress(parsing: started.status.node.advertise)) ?? started.address
            printCreated(made, agent: agent.name, pid: started.pid, address: advertised,
                         token: JoinToken(secret: secret, seeds: [advertised]))
        }
    }

    private func printCreated(_ made: MeshSetup.Created, agent name: String, pid: Int32, address: AgentAddress, token: JoinToken) {
        print("Created mesh \(made.fingerprint); its first agent, \(name), is running (pid \(pid)) at \(address).")
        print("  data directory  \(made.dataDirectory.path)  (cluster.key: the secret, mode 0600; agent.log)")
        print("")
        print("Add a host to the mesh with:")
        print("  mesh join \(token.text)")
        print("The token holds the cluster secret: anyone who has it can join the mesh. `mesh token` prints it again.")
    }
}
