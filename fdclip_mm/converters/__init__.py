from .fd_checkpoint import convert_fd_checkpoint, extract_student, read_state_dict, save_state_dict

__all__ = ['convert_fd_checkpoint', 'extract_student', 'read_state_dict', 'save_state_dict']
