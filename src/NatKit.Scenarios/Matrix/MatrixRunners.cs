namespace NatKit.Scenarios.Matrix;

/// <summary>The one place `natkit lab matrix` takes its cell runner from.</summary>
public static class MatrixRunners
{
    /// <summary>
    /// The traversal that fills the grid: two NatKit traversal nodes (rendezvous, ICE checks, hard-NAT methods, TURN
    /// fallback on one socket) connecting in the cell's lab (<see cref="TraversalCellRunner"/>). When null the verb
    /// says so and shows no grid, since a grid of anything else would be invented.
    /// </summary>
    public static MatrixCellRunner? Default => TraversalCellRunner.Run;

    /// <summary>
    /// The same traversal on real Linux NATs (`--netns`): agents started as processes in the cell's peer
    /// namespaces (<see cref="NetnsMatrixCell.Start"/>) or run here on their real sockets
    /// (<see cref="NetnsMatrixCell.Network"/>): NatKit's nodes in this process, on real sockets in the peers'
    /// namespaces (<see cref="TraversalCellRunner.RunNetnsAsync"/>).
    /// </summary>
    public static NetnsCellRunner? Netns => TraversalCellRunner.RunNetnsAsync;
}
