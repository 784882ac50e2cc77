using NatKit.Lab.Scheduling;

namespace NatKit.Scenarios.Matrix;

/// <summary>Runs the traversal in one namespace cell (agents as processes in <see cref="NetnsMatrixCell.Start"/>,
/// or in this process on <see cref="NetnsMatrixCell.Network"/>) and says what happened, in wall time.</summary>
public delegate Task<MatrixOutcome> NetnsCellRunner(NetnsMatrixCell cell, MatrixOptions options, CancellationToken cancellationToken);

/// <summary>One namespace cell: what the real run did, what the in-memory lab did for the same cell (null when no
/// lab runner was given), and what the oracle expects.</summary>
public sealed record NetnsCellResult(MatrixType A, MatrixType B, MatrixOutcome Outcome, MatrixOutcome? Lab,
    OracleVerdict Expected, TimeSpan WallTime)
{
    /// <summary>The real path is the lab's.</summary>
    public bool AgreesWithLab => Lab is { } lab && lab.Path == Outcome.Path;
}

/// <summary>`natkit lab matrix --netns`: the grid on real Linux NATs, a cell at a time (each is a dozen
/// namespaces, gateways and servers), next to the in-memory lab's result for the same cell.</summary>
public static class NetnsMatrix
{
    /// <summary>The types `--netns` runs by default: the reference document's three kernel routers, and NatKit
    /// gateways for no NAT, a port-restricted cone and both kinds of symmetric NAT.</summary>
    public static IReadOnlyList<MatrixType> DefaultTypes { get; } =
    [
        MatrixTypes.Find("open")!, MatrixTypes.Find("port-restricted-cone")!, MatrixTypes.Find("symmetric-sequential")!,
        MatrixTypes.Find("symmetric-random")!, .. MatrixTypes.Kernel,
    ];

    /// <summary>Every cell of <paramref name="options"/>' types in turn: built (with <paramref name="netns"/>'s
    /// links, clean by default: the in-memory default latency only makes virtual time pass, and netem is a kernel
    /// module some kernels lack; the relay as <paramref name="options"/> says), run with <paramref name="runner"/>,
    /// torn down; and with <paramref name="labRunner"/> the same cell in the in-memory lab. A runner's exception
    /// fails its cell; cancellation stops the run (after tearing the cell down).</summary>
    public static async Task<IReadOnlyList<NetnsCellResult>> RunAsync(MatrixOptions options, NetnsCellRunner runner,
        MatrixCellRunner? labRunner = null, NetnsMatrixOptions? netns = null, Action<NetnsCellResult>? cellDone = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(runner);
        var results = new List<NetnsCellResult>();
        netns = (netns ?? new NetnsMatrixOptions()) with { Relay = options.Relay, PortMapping = options.PortMapping };
        foreach (var (a, b) in TraversalMatrix.Cells(options.Types))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var lab = labRunner is null ? null : TraversalMatrix.RunCell(a, b, options, labRunner).Outcome;
            var start = options.WallClock.GetTimestamp();
            MatrixOutcome outcome;
            await using (var cell = await NetnsMatrixCell.CreateAsync(a, b, netns, cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    outcome = await runner(cell, options, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException or LabRunException
                                              || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                {
                    outcome = MatrixOutcome.Failed($"{e.GetType().Name}: {e.Message}");
                }
            }

            var result = new NetnsCellResult(a, b, outcome, lab, TraversalOracle.Predict(a, b, options.OracleOptions),
                options.WallClock.GetElapsedTime(start));
            results.Add(result);
            cellDone?.Invoke(result);
        }

        return results;
    }
}
