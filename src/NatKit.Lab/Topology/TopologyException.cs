namespace NatKit.Lab.Topology;

/// <summary>One problem in a topology file: where (file, line, column, field path) and what.</summary>
public sealed record TopologyError(string File, int Line, int Column, string Path, string Problem)
{
    public override string ToString() =>
        Line > 0 ? $"{File}:{Line}:{Column}: {Path}: {Problem}" : $"{File}: {Path}: {Problem}";
}

/// <summary>A topology file was refused. <see cref="Errors"/> lists every problem found, each naming the file,
/// the line and the field; the message is those lines.</summary>
public sealed class TopologyException : Exception
{
    public TopologyException(IReadOnlyList<TopologyError> errors)
        : base(string.Join(Environment.NewLine, errors.Select(e => e.ToString())))
    {
        Errors = errors;
    }

    public TopologyException()
        : this([])
    {
    }

    public TopologyException(string message)
        : base(message)
    {
        Errors = [];
    }

    public TopologyException(string message, Exception inner)
        : base(message, inner)
    {
        Errors = [];
    }

    public IReadOnlyList<TopologyError> Errors { get; }
}
