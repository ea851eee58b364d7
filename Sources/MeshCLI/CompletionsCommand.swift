import ArgumentParser

struct CompletionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "completions",
        abstract: "Print a shell completion script.",
        discussion: """
            bash: mesh completions bash > /etc/bash_completion.d/mesh
            zsh:  mesh completions zsh > "${fpath[1]}/_mesh"
            fish: mesh completions fish > ~/.config/fish/completions/mesh.fish
            """
    )

    @Argument(help: "bash, zsh or fish.")
    var shell: CompletionShellArgument

    func run() throws {
        print(MeshCommand.completionScript(for: shell.shell))
    }
}

struct CompletionShellArgument: ExpressibleByArgument {
    var shell: CompletionShell
    init?(argument: String) {
        guard let s = CompletionShell(rawValue: argument) else { return nil }
        shell = s
    }
    static var allValueStrings: [String] { CompletionShell.allCases.map(\.rawValue) }
}
