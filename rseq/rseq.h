// Umbrella header of the rseq library: per-CPU (or per-mm_cid) data without
// writing assembly. See docs/rseq.md for the guide.
//
//   abi.h            kernel ABI (struct rseq, struct rseq_cs, signature)
//   registration.h   RegisterCurrentThread(), CurrentRegistration(), features
//   ids.h            CpuId(), MmCid(), NodeId()
//   pseudocode.h     contracts of the primitives, IndexMode, result types
//   primitives.h     RseqOps: the contracts as rseq critical sections
//   reference.h      ReferenceOps: the contracts under per-id locks
//   percpu_counter.h PerCpuCounter
//   restarts.h       RestartCount()
//   slab.h           PercpuSlab: per-CPU stacks of pointers (pop / push,
//                    batches, capacity, remote eviction and draining)
//   cpus.h           NumPossibleCpus(), AllowedCpuCount()

#ifndef RSEQ_RSEQ_H_
#define RSEQ_RSEQ_H_

#include "rseq/abi.h"
#include "rseq/cpus.h"
#include "rseq/ids.h"
#include "rseq/percpu_counter.h"
#include "rseq/primitives.h"
#include "rseq/pseudocode.h"
#include "rseq/reference.h"
#include "rseq/registration.h"
#include "rseq/restarts.h"
#include "rseq/slab.h"

#endif  // RSEQ_RSEQ_H_
