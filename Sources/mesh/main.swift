import CMeshSystem
import MeshCLI

// Progress lines ("waiting for 1 job on n2 to end", "Running the machine setup…") reach a pipe or
// a file when they are printed, not when the command ends.
mesh_line_buffered_stdout()
MeshCommand.main()
