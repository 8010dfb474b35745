namespace NodeMesh.Consumers;

/// <summary>
/// Where consumers are kept: the state directory on one node, the registry's etcd in a fleet (every node's
/// gateway sees the same consumers). Changes are read-modify-write of one consumer, atomic against other writers.
/// </summary>
internal interface IConsumerStore : IAsyncDisposable
{
    /// <summary>"state directory /var/lib/nodemesh" or "etcd under /nodemesh/consumers/": where they are, for logs and errors.</summary>
    string Describe { get; }

    /// <summary>The consumers as last read; <see cref="ConsumerDirectory.NotLoaded"/> before the first read.</summary>
    ConsumerDirectory Current { get; }

    /// <summary>Reads the consumers (the file: now; etcd: in the background, watching for changes from then on).</summary>
    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Applies <paramref name="change"/> to the consumer named (null: none yet) and stores its result (null: delete),
    /// in force on this node before it returns. <paramref name="change"/> throws <see cref="ConsumerChangeException"/>
    /// to refuse; it may run more than once when another writer came first.
    /// </summary>
    Task<ConsumerRecord?> ChangeAsync(string name, Func<ConsumerRecord?, ConsumerRecord?> change, CancellationToken cancellationToken);
}

internal enum ConsumerRefusal
{
    /// <summary>A field is wrong (400).</summary>
    Invalid,

    /// <summary>No such consumer or key (404).</summary>
    NotFound,

    /// <summary>The name is taken, or the change conflicts with the consumer's state (409).</summary>
    Conflict,
}

/// <summary>A consumer change refused (no such consumer, a name taken, a bad field): the message says which.</summary>
internal sealed class ConsumerChangeException(string message, ConsumerRefusal refusal = ConsumerRefusal.Invalid) : Exception(message)
{
    public ConsumerRefusal Refusal { get; } = refusal;
}

/// <summary>The store cannot be read or written (a corrupt file, etcd unreachable): the message says where.</summary>
internal sealed class ConsumerStoreException(string message, Exception? inner = null) : IOException(message, inner);
