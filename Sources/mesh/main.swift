import MeshCLI

MeshCommand.main()
