import ArgumentParser
import MeshAgent
import MeshCore

/// The options of an agent, shared by `mesh agent`, `mesh init` and `mesh join` (which pass them
/// on to the agent they start).
struct AgentOptions: ParsableArguments {
    /// The longest a machine setup command may run: 30 days.
    static let maxSetupSeconds = 30 * 86_400
    /// The longest idle time before an idle shutdown: 366 days.
    static let maxIdleSeconds = 366 * 86_400

    @Option(name: .long, help: ArgumentHelp("This node's name in the mesh (default: the host name; must be unique).", valueName: "NAME"))
    var name: String = AgentConfiguration.defaultName

    @Option(name: .long, help: ArgumentHelp("Address to listen on; port 0 picks a free port.", valueName: "HOST:PORT"))
    var listen: String = "0.0.0.0:\(AgentAddress.defaultPort)"

    @Option(name: .long, help: ArgumentHelp("Address other hosts should dial (default: the listen address, with the host name for 0.0.0.0).", valueName: "HOST:PORT"))
    var advertise: String?

    @Option(name: .customLong("source"), help: ArgumentHelp("Local address connections to other agents come from (default: the kernel's choice; for hosts with several addresses).", valueName: "HOST"))
    var source: String?

    @Option(name: .customLong("class"), help: ArgumentHelp("A class of machine jobs can ask for (e.g. gpu-a100).", valueName: "CLASS"))
    var nodeClass: String = ""

    @Option(name: .long, help: "Jobs this node runs at once.")
    var slots: Int = 1

    @Option(name: .long, help: ArgumentHelp("GPUs to offer (default: those nvidia-smi lists, none without it).", valueName: "N"))
    var gpus: Int?

    @Option(name: .customLong("label"), help: ArgumentHelp("A label jobs can select on (repeatable).", valueName: "KEY=VALUE"))
    var labels: [String] = []

    @Option(name: .customLong("setup"), help: ArgumentHelp("A machine setup command (repeatable, in order; /bin/sh -c, {MACHINE}: this host's address), run when the agent starts, before the node takes jobs.", valueName: "CMD"))
    var setup: [String] = []

    @Option(name: .long, help: ArgumentHelp("How long one setup command may run before it is stopped and the setup has failed.", valueName: "DURATION"))
    var setupTimeout = TimeSpan(.seconds(3600), text: "1h")

    @Option(name: .long, help: ArgumentHelp("Leave the mesh after this long without a job here, then run --idle-shutdown-cmd.", valueName: "DURATION"))
    var idleShutdownAfter: TimeSpan?

    @Option(name: .long, help: ArgumentHelp("What to run after leaving when idle (e.g. 'sudo poweroff').", valueName: "CMD"))
    var idleShutdownCmd: String?

    @Flag(name: .long, help: "If this data directory lost its state database (state.db missing or empty), start over as a new member instead of refusing to start.")
    var rejoinAsNew = false

    func validate() throws {
        do {
            _ = try AgentAddress(parsing: listen)
            if let advertise { _ = try AgentAddress(parsing: advertise, defaultHost: "") }
        } catch {
            throw ValidationError(error.description)
        }
        if name.isEmpty || name.utf8.count > 64 || name.contains(where: { !($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            throw ValidationError("a node name is 1 to 64 letters, digits, '-', '_' or '.': '\(name)'")
        }
        if let source, source.isEmpty || source.contains(where: { $0 == ":" || $0 == ";" || $0 == "/" || $0 == " " }) {
            throw ValidationError("--source is an IPv4 address or a host name without a port: '\(source)'")
        }
        try checkBound(slots, "--slots", 1...Limits.maxNodeSlots)
        try checkBound(gpus, "--gpus", 0...Limits.maxGPUs)
        if setup.contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) { throw ValidationError("--setup needs a command") }
        try TimeSpan.check(setupTimeout, "--setup-timeout", 1...Double(Self.maxSetupSeconds))
        try TimeSpan.check(idleShutdownAfter, "--idle-shutdown-after", 1...Double(Self.maxIdleSeconds))
        if idleShutdownCmd != nil && idleShutdownAfter == nil { throw ValidationError("--idle-shutdown-cmd needs --idle-shutdown-after") }
        _ = try parsedLabels()
    }

    func parsedLabels() throws -> [String: String] {
        var out: [String: String] = [:]
        for l in labels {
            let parts = l.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty,
                  parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw ValidationError("a label is KEY=VALUE with a key of letters, digits, '-', '_' or '.': '\(l)'")
            }
            out[parts[0]] = parts[1]
        }
        return out
    }

    func configuration(_ dir: DataDirectory, seeds: [String] = []) throws -> AgentConfiguration {
        var c = AgentConfiguration(
            name: name, dataDirectory: dir, listen: try AgentAddress(parsing: listen),
            advertise: try advertise.map { try AgentAddress(parsing: $0) },
            seeds: try seeds.map { try AgentAddress(parsing: $0, defaultHost: "127.0.0.1") },
            nodeClass: nodeClass, labels: try parsedLabels(), slots: slots, gpus: gpus)
        c.transport.sourceAddress = source
        c.lifecycle.setup = setup
        c.lifecycle.setupTimeout = setupTimeout.duration
        c.lifecycle.idleAfter = idleShutdownAfter?.duration
        c.lifecycle.idleCommand = idleShutdownCmd ?? ""
        c.rejoinAsNew = rejoinAsNew
        return c
    }

    /// The same options as arguments of `mesh agent`, for an agent started in the background.
    var arguments: [String] {
        var a = ["--name", name, "--listen", listen, "--slots", String(slots)]
        if let advertise { a += ["--advertise", advertise] }
        if let source { a += ["--source", source] }
        if !nodeClass.isEmpty { a += ["--class", nodeClass] }
        if let gpus { a += ["--gpus", String(gpus)] }
        for l in labels { a += ["--label", l] }
        for s in setup { a += ["--setup", s] }
        if setupTimeout.text != "1h" { a += ["--setup-timeout", setupTimeout.text] }
        if let idleShutdownAfter { a += ["--idle-shutdown-after", idleShutdownAfter.text] }
        if let idleShutdownCmd { a += ["--idle-shutdown-cmd", idleShutdownCmd] }
        if rejoinAsNew { a.append("--rejoin-as-new") }
        return a
    }
}

extension LogOptions {
    var arguments: [String] { logLevel.map { ["--log-level", $0.level.rawValue] } ?? [] }
}
