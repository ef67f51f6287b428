// Open MPI (Debian's libopenmpi-dev). MPI's handles are macros over global objects, which Swift
// cannot import; these inline functions name them.
#include <mpi.h>

static inline MPI_Comm ssd_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype ssd_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype ssd_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype ssd_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype ssd_mpi_byte(void) { return MPI_BYTE; }
static inline void *ssd_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler ssd_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int ssd_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int ssd_mpi_success(void) { return MPI_SUCCESS; }
static inline int ssd_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
