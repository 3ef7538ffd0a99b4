/* qmp/internal.h — private declarations shared by the files of src/qmp/. */
#ifndef SMMUCTL_QMP_INTERNAL_H
#define SMMUCTL_QMP_INTERNAL_H

#endif
