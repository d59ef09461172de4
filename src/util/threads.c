/* threads.c: the one file that knows about OpenMP. */
#ifdef PT_HAVE_OPENMP
#include <omp.h>
#endif

#include "util/util.h"

void pt_set_threads(int n)
{
#ifdef PT_HAVE_OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int pt_get_threads(void)
{
#ifdef PT_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
