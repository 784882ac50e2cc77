using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// A registry several service instances share (Redis: <c>NatKit.Traversal.Redis.RedisRendezvousRegistry</c>): records of nodes by id,
/// each written by the instance that holds the node's NAT mapping, and a bus that carries a connection's steps to the
/// instance holding the other node.
/// </summary>
public interface IRendezvousSharedRegistry : IAsyncDisposable
{
    /// <summary>Writes <paramref name="record"/> (an encoded <see cref="RendezvousRecord"/>) for
    /// <paramref name="lifetime"/>; an empty record or a zero lifetime deletes the node's record.</summary>
    Task StoreAsync(NodeId node, ReadOnlyMemory<byte> record, TimeSpan lifetime);

    /// <summary>The node's record, or null when no instance holds a live one.</summary>
    Task<RendezvousRecord?> LookupAsync(NodeId node, CancellationToken cancellationToken);

    /// <summary>Delivers <paramref name="message"/> to the instance <paramref name="instance"/>.</summary>
    Task RelayAsync(string instance, ReadOnlyMemory<byte> message);

    /// <summary>Starts delivering the messages for <paramref name="instance"/> to <paramref name="receive"/>.</summary>
    Task SubscribeAsync(string instance, Action<ReadOnlyMemory<byte>> receive);
}
