"""Run shipped .sif files on an HPC cluster: Slurm jobs (submit, jobs, logs) and notebook instances, through the bastion."""
