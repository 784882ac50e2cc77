using NatKit.Lab;
using NatKit.Lab.Scheduling;
using NatKit.Traversal.HardNat;
using NatKit.Traversal;

namespace NatKit.Scenarios.Matrix;

/// <summary>What `natkit lab matrix` runs.</summary>
public sealed record MatrixOptions
{
    /// <summary>The NAT types (rows and columns; same-LAN types are cells of their own). Default: every one of
    /// <see cref="MatrixTypes.All"/>.</summary>
    public IReadOnlyList<MatrixType> Types { get; init; } = MatrixTypes.All;

    /// <summary>Seed of the run: each cell's lab gets a seed derived from it and the cell's two type names, so a
    /// cell repeats exactly whatever else runs and in whatever order.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Every link of every lab.</summary>
    public LinkProfile Link { get; init; } = new MatrixLabOptions().Link;

    /// <summary>A TURN server in every lab (false: `--no-relay`).</summary>
    public bool Relay { get; init; } = true;

    /// <summary>Routers serve the port mapping protocols their presets offer and the peers use them (`--portmap`);
    /// off by default, so the default grid is the NATs' behaviour alone.</summary>
    public bool PortMapping { get; init; }

    /// <summary>The traversal's probe budget (birthday probing, prediction); the oracle judges with the same.</summary>
    public ProbeBudget Budget { get; init; } = new();

    /// <summary>Virtual time a cell may take to connect before it counts as failed.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Cells run at once, each lab on a thread of its own. Default: one per processor.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>Clock for the wall times reported (not for anything inside a lab).</summary>
    public TimeProvider WallClock { get; init; } = TimeProvider.System;

    public MatrixLabOptions LabOptions => new() { Link = Link, Relay = Relay, PortMapping = PortMapping };

    public OracleOptions OracleOptions => new() { Relay = Relay, Budget = Budget, PortMapping = PortMapping };
}

/// <summary>What a cell runner measured.</summary>
/// <param name="Path">How the peers connected (or <see cref="MatrixPath.Failed"/>).</param>
/// <param name="Method">What found the path; null when it failed.</param>
/// <param name="ConnectTime">Virtual time from the connect call to a usable path.</param>
/// <param name="ProbesSent">Connectivity checks and hole-punching probes sent by both peers.</param>
/// <param name="Rtt">Round-trip time on the selected path.</param>
/// <param name="Detail">What went wrong, or anything else worth a look.</param>
public sealed record MatrixOutcome(MatrixPath Path, TraversalMethod? Method, TimeSpan? ConnectTime, long ProbesSent,
    TimeSpan? Rtt = null, string? Detail = null)
{
    public static MatrixOutcome Failed(string detail, long probesSent = 0) =>
        new(MatrixPath.Failed, null, null, probesSent, null, detail);
}

/// <summary>Runs the traversal in one cell's lab (on the calling thread: the lab is single-threaded) and says what
/// happened. Exceptions become failed cells.</summary>
public delegate MatrixOutcome MatrixCellRunner(MatrixCellLab cell, MatrixOptions options);

/// <summary>One cell of the grid: what happened, and what the oracle expected.</summary>
public sealed record MatrixCellResult(MatrixType A, MatrixType B, int Seed, MatrixOutcome Outcome,
    OracleVerdict Expected, TimeSpan VirtualTime, TimeSpan WallTime)
{
    public MatrixPath Path => Outcome.Path;

    /// <summary>The path is the one the oracle expects.</summary>
    public bool Agrees => Outcome.Path == Expected.Path;

    /// <summary>Both peers on one LAN (a cell of its own, outside the A x B grid).</summary>
    public bool SameLan => A.Placement == MatrixPlacement.SameLan;
}

/// <summary>The whole run.</summary>
public sealed record MatrixResult(MatrixOptions Options, IReadOnlyList<MatrixCellResult> Cells, TimeSpan WallTime)
{
    /// <summary>The grid's rows and columns (types other than same-LAN), in order.</summary>
    public IReadOnlyList<MatrixType> GridTypes =>
        Options.Types.Where(t => t.Placement != MatrixPlacement.SameLan).ToList();

    public MatrixCellResult? Cell(string a, string b) =>
        Cells.FirstOrDefault(c => c.A.Name == a && c.B.Name == b);

    public int Disagreements => Cells.Count(c => !c.Agrees);

    /// <summary>Cells that failed although a relay was configured.</summary>
    public int FailedWithRelay => Options.Relay ? Cells.Count(c => c.Path == MatrixPath.Failed) : 0;

    /// <summary>0 when every cell agrees with the oracle and none failed with a relay configured, else 1.</summary>
    public int ExitCode => Disagreements == 0 && FailedWithRelay == 0 ? 0 : 1;
}

/// <summary>
/// `natkit lab matrix`: the traversal between two lab hosts for every pair of NAT types, each cell in a fresh lab
/// (<see cref="MatrixLab"/>) built from a seed derived from the run's seed and the cell's types, next to what the
/// NATs' knobs permit (<see cref="TraversalOracle"/>). Cells are independent labs: they run on several threads,
/// one lab per thread.
/// </summary>
public static class TraversalMatrix
{
    /// <summary>The cells <paramref name="types"/> make: every ordered pair of grid types (A connects to B), then
    /// each same-LAN type once.</summary>
    public static IReadOnlyList<(MatrixType A, MatrixType B)> Cells(IReadOnlyList<MatrixType> types)
    {
        ArgumentNullException.ThrowIfNull(types);
        var grid = types.Where(t => t.Placement != MatrixPlacement.SameLan).ToList();
        var cells = new List<(MatrixType, MatrixType)>();
        foreach (var a in grid)
        {
            foreach (var b in grid)
            {
                cells.Add((a, b));
            }
        }

        cells.AddRange(types.Where(t => t.Placement == MatrixPlacement.SameLan).Select(t => (t, t)));
        return cells;
    }

    /// <summary>The seed of the cell <paramref name="a"/> x <paramref name="b"/>: FNV-1a of the two names mixed
    /// with the run's seed (stable across processes, unlike string.GetHashCode).</summary>
    public static int CellSeed(int seed, string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var h = 2166136261u;
        foreach (var c in $"{a}\n{b}")
        {
            h = (h ^ c) * 16777619u;
        }

        return (int)(h ^ (uint)seed * 2654435761u) & int.MaxValue;
    }

    /// <summary>Runs every cell with <paramref name="runner"/>; <paramref name="cellDone"/> is called (from the
    /// cell's thread) as each finishes. Results come back in <see cref="Cells"/>' order.</summary>
    public static MatrixResult Run(MatrixOptions options, MatrixCellRunner runner, Action<MatrixCellResult>? cellDone = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(runner);
        var cells = Cells(options.Types);
        var results = new MatrixCellResult[cells.Count];
        var clock = options.WallClock;
        var start = clock.GetTimestamp();
        Parallel.For(0, cells.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism) }, i =>
        {
            results[i] = RunCell(cells[i].A, cells[i].B, options, runner);
            cellDone?.Invoke(results[i]);
        });
        return new MatrixResult(options, results, clock.GetElapsedTime(start));
    }

    /// <summary>One cell, on the calling thread.</summary>
    public static MatrixCellResult RunCell(MatrixType a, MatrixType b, MatrixOptions options, MatrixCellRunner runner)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(runner);
        var clock = options.WallClock;
        var start = clock.GetTimestamp();
        var seed = CellSeed(options.Seed, a.Name, b.Name);
        var expected = TraversalOracle.Predict(a, b, options.OracleOptions);
        var cell = MatrixLab.Build(a, b, seed, options.LabOptions);
        MatrixOutcome outcome;
        try
        {
            outcome = runner(cell, options);
        }
        catch (Exception e) when (e is LabRunException or InvalidOperationException or TimeoutException
                                      or OperationCanceledException or IOException)
        {
            outcome = MatrixOutcome.Failed($"{e.GetType().Name}: {e.Message}");
        }

        return new MatrixCellResult(a, b, seed, outcome, expected, cell.Lab.Now, clock.GetElapsedTime(start));
    }
}
